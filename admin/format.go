package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteTable prints a JSON result for a person: a list of objects as a
// table with a header row, an object as "key: value" lines (a list of
// objects in it as an indented table), anything else as it is. Keys keep
// the order the server sent them in.
func WriteTable(w io.Writer, result json.RawMessage) error {
	v, err := decodeOrdered(result)
	if err != nil {
		return fmt.Errorf("admin: result: %w", err)
	}
	return writeValue(w, v, "")
}

// object is a JSON object with its keys in order.
type object struct {
	keys []string
	vals map[string]any
}

func decodeOrdered(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return decodeValue(dec)
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			o := &object{vals: map[string]any{}}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				if _, dup := o.vals[k]; !dup {
					o.keys = append(o.keys, k)
				}
				o.vals[k] = v
			}
			_, err := dec.Token()
			return o, err
		case '[':
			var arr []any
			for dec.More() {
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
			_, err := dec.Token()
			return arr, err
		}
	}
	return tok, nil
}

func writeValue(w io.Writer, v any, indent string) error {
	switch t := v.(type) {
	case []any:
		if rows, ok := objects(t); ok {
			return writeRows(w, rows, indent)
		}
		for _, e := range t {
			if _, err := fmt.Fprintf(w, "%s%s\n", indent, scalar(e)); err != nil {
				return err
			}
		}
		if len(t) == 0 {
			_, err := fmt.Fprintf(w, "%s(none)\n", indent)
			return err
		}
		return nil
	case *object:
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		var nested []string
		for _, k := range t.keys {
			if arr, ok := t.vals[k].([]any); ok && len(arr) > 0 {
				if _, ok := objects(arr); ok {
					nested = append(nested, k)
					continue
				}
			}
			if o, ok := t.vals[k].(*object); ok && len(o.keys) > 0 {
				nested = append(nested, k)
				continue
			}
			fmt.Fprintf(tw, "%s%s:\t%s\n", indent, k, scalar(t.vals[k]))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, k := range nested {
			if _, err := fmt.Fprintf(w, "%s%s:\n", indent, k); err != nil {
				return err
			}
			if err := writeValue(w, t.vals[k], indent+"  "); err != nil {
				return err
			}
		}
		return nil
	}
	_, err := fmt.Fprintf(w, "%s%s\n", indent, scalar(v))
	return err
}

func objects(arr []any) ([]*object, bool) {
	if len(arr) == 0 {
		return nil, false
	}
	rows := make([]*object, len(arr))
	for i, e := range arr {
		o, ok := e.(*object)
		if !ok {
			return nil, false
		}
		rows[i] = o
	}
	return rows, true
}

func writeRows(w io.Writer, rows []*object, indent string) error {
	var cols []string
	seen := map[string]bool{}
	for _, r := range rows {
		for _, k := range r.keys {
			if !seen[k] {
				seen[k] = true
				cols = append(cols, k)
			}
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, indent+strings.ToUpper(strings.Join(cols, "\t"))+"\n")
	for _, r := range rows {
		cells := make([]string, len(cols))
		for i, c := range cols {
			if v, ok := r.vals[c]; ok {
				cells[i] = scalar(v)
			} else {
				cells[i] = "-"
			}
		}
		fmt.Fprint(tw, indent+strings.Join(cells, "\t")+"\n")
	}
	return tw.Flush()
}

// scalar renders a leaf; nested values are shown as compact JSON.
func scalar(v any) string {
	switch t := v.(type) {
	case nil:
		return "-"
	case string:
		if t == "" {
			return `""`
		}
		return t
	case json.Number:
		return t.String()
	case bool:
		if t {
			return "true"
		}
		return "false"
	case *object:
		parts := make([]string, len(t.keys))
		for i, k := range t.keys {
			parts[i] = k + "=" + scalar(t.vals[k])
		}
		return "{" + strings.Join(parts, " ") + "}"
	case []any:
		parts := make([]string, len(t))
		for i, e := range t {
			parts[i] = scalar(e)
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	return fmt.Sprint(v)
}
