package sipbench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// statsRow is one periodic row of SIPp's -trace_stat file (written every
// -fd seconds; the runner passes -fd 1).
type statsRow struct {
	Start   time.Time // StartTime
	Now     time.Time // CurrentTime
	Created int64     // TotalCallCreated (cumulative)
	Live    int64     // CurrentCall (calls in progress)
	Success int64     // SuccessfulCall(C)
	Failed  int64     // FailedCall(C)
}

// readStatsRows reads every complete row of a SIPp statistics file.
func readStatsRows(path string) ([]statsRow, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseStatsRows(data)
}

func parseStatsRows(data []byte) ([]statsRow, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var header []string
	idx := map[string]int{}
	var rows []statsRow
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(line, ";")
		if header == nil {
			header = f
			for i, h := range f {
				idx[strings.TrimSpace(h)] = i
			}
			continue
		}
		if len(f) < len(header)-1 {
			continue // incomplete (being written)
		}
		get := func(col string) string {
			if i, ok := idx[col]; ok && i < len(f) {
				return strings.TrimSpace(f[i])
			}
			return ""
		}
		num := func(col string) int64 {
			v, _ := strconv.ParseFloat(get(col), 64)
			return int64(v)
		}
		r := statsRow{
			Start:   sippTime(get("StartTime")),
			Now:     sippTime(get("CurrentTime")),
			Created: num("TotalCallCreated"),
			Live:    num("CurrentCall"),
			Success: num("SuccessfulCall(C)"),
			Failed:  num("FailedCall(C)"),
		}
		if r.Created == 0 {
			r.Created = num("IncomingCall(C)") + num("OutgoingCall(C)")
		}
		rows = append(rows, r)
	}
	if header == nil {
		return nil, fmt.Errorf("empty statistics file")
	}
	return rows, sc.Err()
}

// sippTime parses SIPp's "2026-11-23\t10:23:24.141390\t1795429404.141390":
// the last field is the Unix time with microseconds.
func sippTime(s string) time.Time {
	f := strings.Fields(s)
	if len(f) == 0 {
		return time.Time{}
	}
	v, err := strconv.ParseFloat(f[len(f)-1], 64)
	if err != nil {
		return time.Time{}
	}
	sec := int64(v)
	return time.Unix(sec, int64((v-float64(sec))*1e9))
}

// creationSpan is how long SIPp took to create its calls: from StartTime to
// the moment the cumulative created count reached its final value,
// interpolated linearly between the periodic rows.
func creationSpan(rows []statsRow) (created int64, span time.Duration, ok bool) {
	if len(rows) == 0 {
		return 0, 0, false
	}
	final := rows[len(rows)-1].Created
	start := rows[0].Start
	if final == 0 || start.IsZero() {
		return final, 0, false
	}
	prevT, prevN := start, int64(0)
	for _, r := range rows {
		if r.Now.IsZero() {
			continue
		}
		if r.Created >= final {
			if r.Created == prevN {
				return final, prevT.Sub(start), true
			}
			frac := float64(final-prevN) / float64(r.Created-prevN)
			end := prevT.Add(time.Duration(frac * float64(r.Now.Sub(prevT))))
			return final, end.Sub(start), end.After(start)
		}
		prevT, prevN = r.Now, r.Created
	}
	return final, 0, false
}

// peakCurrent is the highest CurrentCall of the rows.
func peakCurrent(rows []statsRow) int64 {
	var m int64
	for _, r := range rows {
		m = max(m, r.Live)
	}
	return m
}
