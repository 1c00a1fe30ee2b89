package sipasync

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/sipasync/sipasync/admin"
	"github.com/sipasync/sipasync/internal/config"
)

// Ctl is "sipasync ctl [flags] METHOD [PARAMS...]": it calls METHOD on a
// running sipasync's control interface and prints the result as a table
// (or JSON with --json). PARAMS are either one JSON object or array, or
// name=value pairs, or values in the method's param order; a value that
// reads as JSON (a number, true, an object) is sent as such, anything else
// as a string. The admin address and token come from --admin/--admin-token,
// SIPASYNC_ADMIN/SIPASYNC_ADMIN_TOKEN, or the --config file, as for the
// server. Exit status: 0 done, 1 the method failed, 2 usage or connection.
func Ctl(name string, args []string, stdout, stderr io.Writer, environ []string) int {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SetInterspersed(false)
	var op OperateOptions
	op.Register(fs, admin.DefaultAddr)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the answer")
	help := fs.BoolP("help", "h", false, "show this help")
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "%s: %s\n", name, fmt.Sprintf(format, a...))
		return 2
	}
	if err := fs.Parse(args); err != nil {
		return fail("%v (see --help)", err)
	}
	if *help || fs.NArg() == 0 {
		fmt.Fprintf(stderr, "Usage: %s [--admin host:port] [--json] METHOD [PARAMS...]\n", name)
		fmt.Fprintln(stderr, "  e.g. tm.stats; async.list; async.resume 3:1:1; devstate.get device=alice; system.listMethods")
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		if *help {
			return 0
		}
		return 2
	}
	// The admin address and token layer as the server's do; other keys of
	// the environment and the config file are the server's business.
	env, err := config.Environ(fs, environ, config.Options{IgnoreUnknown: true})
	if err != nil {
		return fail("%v", err)
	}
	if e, ok := env["config"]; ok && !fs.Changed("config") {
		op.Config = e.Values[0]
	}
	file := config.Layer{}
	if op.Config != "" {
		if file, err = config.ReadFile(fs, op.Config, config.Options{IgnoreUnknown: true}); err != nil {
			return fail("%v", err)
		}
	}
	for _, l := range []config.Layer{env, file} {
		for k := range l {
			if k != "admin" && k != "admin-token" {
				delete(l, k)
			}
		}
	}
	if _, err := config.Apply(fs, env, file); err != nil {
		return fail("%v", err)
	}
	if !op.adminOn() {
		return fail("--admin is off: nothing to call")
	}
	method := fs.Arg(0)
	params, err := ctlParams(fs.Args()[1:])
	if err != nil {
		return fail("%s: %v", method, err)
	}
	addr := op.Admin
	if strings.HasSuffix(addr, ":0") {
		return fail("--admin %s: give the port the server logged at start-up (admin=...)", addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	res, err := (&admin.Client{Addr: addr, Token: op.AdminToken}).Call(ctx, method, params)
	var rerr *admin.Error
	if errors.As(err, &rerr) {
		fmt.Fprintf(stderr, "%s: %s: %s (code %d)\n", name, method, rerr.Message, rerr.Code)
		return 1
	}
	if err != nil {
		return fail("%v", err)
	}
	if *asJSON {
		var b bytes.Buffer
		if err := json.Indent(&b, res, "", "  "); err != nil {
			return fail("%v", err)
		}
		b.WriteByte('\n')
		_, _ = stdout.Write(b.Bytes())
		return 0
	}
	if err := admin.WriteTable(stdout, res); err != nil {
		return fail("%v", err)
	}
	return 0
}

// ctlParams turns command-line params into JSON-RPC params.
func ctlParams(args []string) (any, error) {
	if len(args) == 0 {
		return nil, nil
	}
	if len(args) == 1 {
		a := strings.TrimSpace(args[0])
		if strings.HasPrefix(a, "{") || strings.HasPrefix(a, "[") {
			if !json.Valid([]byte(a)) {
				return nil, fmt.Errorf("params %s: not valid JSON", a)
			}
			return json.RawMessage(a), nil
		}
	}
	named := map[string]json.RawMessage{}
	var positional []json.RawMessage
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if ok && k != "" && !strings.ContainsAny(k, " {[\"") {
			named[k] = ctlValue(v)
			continue
		}
		positional = append(positional, ctlValue(a))
	}
	switch {
	case len(named) > 0 && len(positional) > 0:
		return nil, errors.New("give params either as name=value or in order, not both")
	case len(named) > 0:
		return named, nil
	}
	return positional, nil
}

func ctlValue(s string) json.RawMessage {
	if json.Valid([]byte(s)) && s != "" {
		return json.RawMessage(s)
	}
	b, _ := json.Marshal(s)
	return b
}
