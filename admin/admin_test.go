package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func testRPC(t *testing.T) *RPC {
	t.Helper()
	r := NewRPC()
	require.NoError(t, r.Register("demo.echo", "echo a word n times", []string{"word", "n?"},
		func(_ context.Context, p json.RawMessage) (any, error) {
			in := struct {
				Word string `json:"word"`
				N    int    `json:"n"`
			}{N: 1}
			if err := DecodeParams(p, &in); err != nil {
				return nil, err
			}
			return strings.Repeat(in.Word, in.N), nil
		}))
	require.NoError(t, r.Register("demo.fail", "always fails", nil,
		func(context.Context, json.RawMessage) (any, error) { return nil, errors.New("it broke") }))
	return r
}

func call(t *testing.T, r *RPC, body string) Response {
	t.Helper()
	var res Response
	require.NoError(t, json.Unmarshal(r.Handle(context.Background(), []byte(body)), &res))
	return res
}

func TestRPCNamedAndPositionalParams(t *testing.T) {
	r := testRPC(t)
	res := call(t, r, `{"jsonrpc":"2.0","method":"demo.echo","params":{"word":"ab","n":2},"id":7}`)
	require.Nil(t, res.Error)
	assert.JSONEq(t, `"abab"`, string(res.Result))
	assert.JSONEq(t, `7`, string(res.ID))

	res = call(t, r, `{"jsonrpc":"2.0","method":"demo.echo","params":["x",3],"id":"a"}`)
	require.Nil(t, res.Error)
	assert.JSONEq(t, `"xxx"`, string(res.Result))
}

func TestRPCErrors(t *testing.T) {
	r := testRPC(t)
	for _, tc := range []struct {
		name, body string
		code       int
		msg        string
	}{
		{"unknown method", `{"jsonrpc":"2.0","method":"demo.nope","id":1}`, CodeMethodNotFound, `method "demo.nope" not found`},
		{"missing param", `{"jsonrpc":"2.0","method":"demo.echo","id":1}`, CodeInvalidParams, `missing param "word"`},
		{"unknown param", `{"jsonrpc":"2.0","method":"demo.echo","params":{"word":"a","x":1},"id":1}`, CodeInvalidParams, `unknown param "x"`},
		{"wrong type", `{"jsonrpc":"2.0","method":"demo.echo","params":{"word":"a","n":"two"},"id":1}`, CodeInvalidParams, `param "n": want a int`},
		{"too many positional", `{"jsonrpc":"2.0","method":"demo.echo","params":["a",1,2],"id":1}`, CodeInvalidParams, `at most 2 params`},
		{"params on a method without", `{"jsonrpc":"2.0","method":"system.listMethods","params":{"a":1},"id":1}`, CodeInvalidParams, `takes no params`},
		{"scalar params", `{"jsonrpc":"2.0","method":"demo.echo","params":3,"id":1}`, CodeInvalidParams, `object or an array`},
		{"failure", `{"jsonrpc":"2.0","method":"demo.fail","id":1}`, CodeFailed, `it broke`},
		{"not 2.0", `{"jsonrpc":"1.0","method":"demo.fail","id":1}`, CodeInvalidRequest, `"jsonrpc":"2.0"`},
		{"parse error", `{"jsonrpc":`, CodeParseError, `parse error`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := call(t, r, tc.body)
			require.NotNil(t, res.Error)
			assert.Equal(t, tc.code, res.Error.Code)
			assert.Contains(t, res.Error.Message, tc.msg)
		})
	}
}

func TestRPCBatchAndNotification(t *testing.T) {
	r := testRPC(t)
	assert.Nil(t, r.Handle(context.Background(), []byte(`{"jsonrpc":"2.0","method":"demo.echo","params":["a"]}`)))
	out := r.Handle(context.Background(), []byte(`[{"jsonrpc":"2.0","method":"demo.echo","params":["a"],"id":1},
		{"jsonrpc":"2.0","method":"demo.echo","params":["b"]},{"jsonrpc":"2.0","method":"x.y","id":2}]`))
	var res []Response
	require.NoError(t, json.Unmarshal(out, &res))
	require.Len(t, res, 2)
	assert.JSONEq(t, `"a"`, string(res[0].Result))
	assert.Equal(t, CodeMethodNotFound, res[1].Error.Code)
}

func TestRPCListAndHelp(t *testing.T) {
	r := testRPC(t)
	res := call(t, r, `{"jsonrpc":"2.0","method":"system.listMethods","id":1}`)
	assert.JSONEq(t, `["demo.echo","demo.fail","system.listMethods","system.methodHelp"]`, string(res.Result))
	res = call(t, r, `{"jsonrpc":"2.0","method":"system.methodHelp","params":["demo.echo"],"id":1}`)
	assert.JSONEq(t, `{"name":"demo.echo","help":"echo a word n times","params":["word","n?"]}`, string(res.Result))
	require.Error(t, r.Register("demo.echo", "", nil, func(context.Context, json.RawMessage) (any, error) { return nil, nil }))
	require.Error(t, r.Register("noDot", "", nil, func(context.Context, json.RawMessage) (any, error) { return nil, nil }))
}

func TestServerMetricsRPCAndClient(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "sipasync", Name: "test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	s, err := Listen(Options{Addr: "127.0.0.1:0", Gatherer: reg, RPC: testRPC(t)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })

	res, err := http.Get("http://" + s.Addr() + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	assert.Contains(t, string(body), "sipasync_test_total 3")

	cl := &Client{Addr: s.Addr()}
	out, err := cl.Call(context.Background(), "demo.echo", []any{"z", 2})
	require.NoError(t, err)
	assert.JSONEq(t, `"zz"`, string(out))
	_, err = cl.Call(context.Background(), "demo.nope", nil)
	var re *Error
	require.ErrorAs(t, err, &re)
	assert.Equal(t, CodeMethodNotFound, re.Code)
}

func TestServerToken(t *testing.T) {
	s, err := Listen(Options{Addr: "127.0.0.1:0", Token: "s3cret", RPC: testRPC(t)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	_, err = (&Client{Addr: s.Addr()}).Call(context.Background(), "system.listMethods", nil)
	require.ErrorContains(t, err, "401")
	_, err = (&Client{Addr: s.Addr(), Token: "wrong"}).Call(context.Background(), "system.listMethods", nil)
	require.ErrorContains(t, err, "401")
	_, err = (&Client{Addr: s.Addr(), Token: "s3cret"}).Call(context.Background(), "system.listMethods", nil)
	require.NoError(t, err)
}

func TestListenErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	_, err = Listen(Options{Addr: ln.Addr().String()})
	require.ErrorContains(t, err, "address already in use")
	require.ErrorContains(t, err, ln.Addr().String())

	_, err = Listen(Options{Addr: "0.0.0.0:0"})
	require.ErrorIs(t, err, ErrRemoteNeedsToken)
	_, err = Listen(Options{Addr: "nonsense"})
	require.ErrorContains(t, err, `"nonsense"`)
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, WriteTable(&b, json.RawMessage(`[{"token":"1:1","age":"2s","route":"RESUME"},{"token":"2:1","age":"1s"}]`)))
	assert.Equal(t, "TOKEN  AGE  ROUTE\n1:1    2s   RESUME\n2:1    1s   -\n", b.String())

	b.Reset()
	require.NoError(t, WriteTable(&b, json.RawMessage(`{"live":3,"parked":1,"groups":[{"name":"default","busy":0}]}`)))
	assert.Equal(t, "live:    3\nparked:  1\ngroups:\n  NAME     BUSY\n  default  0\n", b.String())

	b.Reset()
	require.NoError(t, WriteTable(&b, json.RawMessage(`"42s"`)))
	assert.Equal(t, "42s\n", b.String())
	require.Error(t, WriteTable(&b, json.RawMessage(`{`)))
}
