package sipbench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// WriteJSON writes v as indented JSON to path (atomically).
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'))
}

// LoadReport reads a JSON file written by the runner: a *Report (ladder) or
// a *MemReport (parked memory).
func LoadReport(path string) (any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var kind struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(b, &kind); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	switch kind.Kind {
	case "ladder":
		var r Report
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		r.finish()
		return &r, nil
	case "suite":
		var r Suite
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		for _, l := range r.Ladders {
			l.finish()
		}
		return &r, nil
	case "flood":
		var r FloodReport
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return &r, nil
	case "parked-memory":
		var r MemReport
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return &r, nil
	}
	return nil, fmt.Errorf("%s: unknown report kind %q", path, kind.Kind)
}

// Markdown renders a loaded report as a RESULTS.md block and returns its
// block ID.
func Markdown(v any) (id, body string, err error) {
	switch r := v.(type) {
	case *Report:
		return r.BlockID(), r.Markdown(), nil
	case *MemReport:
		return r.BlockID(), r.Markdown(), nil
	case *FloodReport:
		return r.BlockID(), r.Markdown(), nil
	}
	return "", "", fmt.Errorf("cannot render %T", v)
}

// BlockID names the report's block in RESULTS.md: one per scenario, target
// and step length, so an exploratory ladder and a full one can sit side by
// side.
func (r *Report) BlockID() string {
	return fmt.Sprintf("%s/%s/%gs", r.Scenario.ID, r.Target, r.StepDurationS)
}

var portRE = regexp.MustCompile(`127\.0\.0\.1:\d+`)

// displayCommand renders a program's command line for a report: the
// listening port, which changes with every step, as PORT.
func displayCommand(cmd []string) string {
	return portRE.ReplaceAllString(strings.Join(cmd, " "), "127.0.0.1:PORT")
}

// Markdown is the ladder as a RESULTS.md block: how it was run, the table,
// the highest clean rate.
func (r *Report) Markdown() string {
	var b strings.Builder
	sc := r.Scenario
	fmt.Fprintf(&b, "**%s %s** on %s: %s. ", sc.ID, sc.Name, r.Target, sc.Description)
	if len(r.ProxyCommand) > 0 {
		fmt.Fprintf(&b, "Proxy: `%s`. ", displayCommand(r.ProxyCommand))
	}
	b.WriteString("Each step starts a fresh proxy")
	if sc.UAS != "" {
		b.WriteString(", a SIPp UAS registered with it")
	}
	fmt.Fprintf(&b, ", then the SIPp UAC (`%s`) for %gs at the rate; response time is SIPp's RTD 1 "+
		"(INVITE to the final response, whole ms); CPU is utime+stime over the UAC's run "+
		"(100%% = one core, summed over a multi-process proxy); peak memory is VmHWM, "+
		"or for a multi-process proxy (Kamailio) the peak of the PSS summed over its processes.\n\n", strings.TrimPrefix(sc.UAC, "bench:"), r.StepDurationS)
	fmt.Fprintf(&b, "    %s\n\n", r.Command)
	fmt.Fprintf(&b, "Machine: %s. Run %s.\n\n", r.Machine, r.Started.UTC().Format("2006-01-02 15:04 UTC"))
	hasUAS := sc.UAS != ""
	b.WriteString("| calls/s | achieved | successful | failed | unfinished | retrans | p50 ms | p99 ms | max ms | proxy CPU | proxy peak memory |")
	if hasUAS {
		b.WriteString(" SIPp UAC / UAS CPU |")
	} else {
		b.WriteString(" SIPp UAC CPU |")
	}
	b.WriteString(" load (1 min) / other runnable before | clean |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.Steps {
		sipp := fmt.Sprintf("%.0f%%", s.UAC.CPUPercent)
		if hasUAS && s.UAS != nil {
			sipp += fmt.Sprintf(" / %.0f%%", s.UAS.CPUPercent)
		}
		clean := "yes"
		if !s.Clean {
			clean = "no: " + strings.Join(s.Problems, "; ")
		}
		mem, kind := s.Memory()
		if s.UACs > 1 {
			sipp += fmt.Sprintf(" (%d UACs)", s.UACs)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %.0f%% | %s %s | %s | %.1f / %.1f | %s |\n",
			group(s.Rate), group(s.AchievedRate), groupInt(s.Successful), groupInt(s.Failed), groupInt(s.Unfinished),
			groupInt(s.Retransmissions), fmtMS(s.RTT.P50), fmtMS(s.RTT.P99), fmtMS(s.RTT.Max),
			s.ProxyCPUPercent, fmtMiB(mem), kind, sipp, s.LoadAvg, s.Background.Runnable, clean)
	}
	fmt.Fprintf(&b, "\nHighest clean rate: **%s**", r.HighestCleanString())
	if r.Stopped != "" {
		fmt.Fprintf(&b, " (ladder stopped after %s)", r.Stopped)
	}
	b.WriteString(".\n")
	return b.String()
}

// group formats a rate with thousands separators and no decimals.
func group(v float64) string { return groupInt(int64(v + 0.5)) }

func groupInt(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// UpdateSection writes body into the "## ..." section of a markdown file,
// between <!-- sipbench:begin ID --> and <!-- sipbench:end ID --> markers.
// An existing block with the same ID is replaced; otherwise the block is
// added at the end of the section (replacing a lone "(pending)"). A missing
// section is added at the end of the file. Nothing else in the file
// changes.
func UpdateSection(path, section, id, body string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := updateSection(string(data), section, id, body)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, []byte(out))
}

func updateSection(doc, section, id, body string) (string, error) {
	section = strings.TrimSpace(section)
	if !strings.HasPrefix(section, "## ") {
		return "", fmt.Errorf("section %q: want a level-2 heading (\"## ...\")", section)
	}
	begin := "<!-- sipbench:begin " + id + " -->"
	end := "<!-- sipbench:end " + id + " -->"
	block := begin + "\n" + strings.TrimRight(body, "\n") + "\n" + end
	lines := strings.Split(doc, "\n")
	start := -1
	for i, l := range lines {
		if strings.TrimSpace(l) == section {
			start = i
			break
		}
	}
	if start < 0 {
		return strings.TrimRight(doc, "\n") + "\n\n" + section + "\n\n" + block + "\n", nil
	}
	stop := len(lines)
	for i := start + 1; i < len(lines); i++ {
		if strings.HasPrefix(lines[i], "## ") {
			stop = i
			break
		}
	}
	sec := lines[start+1 : stop]
	var rebuilt []string
	bi, ei := -1, -1
	for i, l := range sec {
		switch strings.TrimSpace(l) {
		case begin:
			bi = i
		case end:
			if bi >= 0 && ei < 0 {
				ei = i
			}
		}
	}
	switch {
	case bi >= 0 && ei > bi:
		rebuilt = append(rebuilt, sec[:bi]...)
		rebuilt = append(rebuilt, block)
		rebuilt = append(rebuilt, sec[ei+1:]...)
	case strings.TrimSpace(strings.Join(sec, "\n")) == "(pending)" || strings.TrimSpace(strings.Join(sec, "\n")) == "":
		rebuilt = []string{"", block, ""}
	default:
		n := len(sec)
		for n > 0 && strings.TrimSpace(sec[n-1]) == "" {
			n--
		}
		rebuilt = append(rebuilt, sec[:n]...)
		rebuilt = append(rebuilt, "", block, "")
	}
	if stop == len(lines) {
		// Last section: end the file with exactly one newline.
		for len(rebuilt) > 0 && strings.TrimSpace(rebuilt[len(rebuilt)-1]) == "" {
			rebuilt = rebuilt[:len(rebuilt)-1]
		}
		rebuilt = append(rebuilt, "")
	}
	var res []string
	res = append(res, lines[:start+1]...)
	res = append(res, rebuilt...)
	res = append(res, lines[stop:]...)
	return strings.Join(res, "\n"), nil
}

func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if fi, err := os.Stat(path); err == nil {
		_ = os.Chmod(tmp, fi.Mode().Perm())
	} else {
		_ = os.Chmod(tmp, 0o644)
	}
	return os.Rename(tmp, path)
}
