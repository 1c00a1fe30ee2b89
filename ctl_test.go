package sipasync

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCtlParams(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // JSON; "" for no params
		err  string
	}{
		{args: nil, want: ""},
		{args: []string{"3:1"}, want: `["3:1"]`},
		{args: []string{"3:1", "486"}, want: `["3:1",486]`},
		{args: []string{"token=3:1", "code=486", "reason=Busy Here"}, want: `{"code":486,"reason":"Busy Here","token":"3:1"}`},
		{args: []string{`{"event":"E","attrs":{"a":"b"}}`}, want: `{"event":"E","attrs":{"a":"b"}}`},
		{args: []string{"E", `{"a":"b"}`}, want: `["E",{"a":"b"}]`},
		{args: []string{"msg=a=b"}, want: `{"msg":"a=b"}`},
		{args: []string{"true"}, want: `[true]`},
		{args: []string{"{broken"}, err: "not valid JSON"},
		{args: []string{"a=1", "b"}, err: "not both"},
	} {
		got, err := ctlParams(tc.args)
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err, tc.args)
			continue
		}
		require.NoError(t, err, tc.args)
		if tc.want == "" {
			assert.Nil(t, got, tc.args)
			continue
		}
		b, err := json.Marshal(got)
		require.NoError(t, err)
		assert.JSONEq(t, tc.want, string(b), tc.args)
	}
}
