package sipptest

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A -trace_stat file written by SIPp 3.6.1 for three uac_call.xml calls:
// a row at start, a periodic one and the final one.
const stats361 = "StartTime;LastResetTime;CurrentTime;ElapsedTime(P);ElapsedTime(C);TargetRate;CallRate(P);CallRate(C);IncomingCall(P);IncomingCall(C);OutgoingCall(P);OutgoingCall(C);TotalCallCreated;CurrentCall;SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C);FailedCannotSendMessage(P);FailedCannotSendMessage(C);FailedMaxUDPRetrans(P);FailedMaxUDPRetrans(C);FailedTcpConnect(P);FailedTcpConnect(C);FailedTcpClosed(P);FailedTcpClosed(C);FailedUnexpectedMessage(P);FailedUnexpectedMessage(C);FailedCallRejected(P);FailedCallRejected(C);FailedCmdNotSent(P);FailedCmdNotSent(C);FailedRegexpDoesntMatch(P);FailedRegexpDoesntMatch(C);FailedRegexpShouldntMatch(P);FailedRegexpShouldntMatch(C);FailedRegexpHdrNotFound(P);FailedRegexpHdrNotFound(C);FailedOutboundCongestion(P);FailedOutboundCongestion(C);FailedTimeoutOnRecv(P);FailedTimeoutOnRecv(C);FailedTimeoutOnSend(P);FailedTimeoutOnSend(C);FailedTestDoesntMatch(P);FailedTestDoesntMatch(C);FailedTestShouldntMatch(P);FailedTestShouldntMatch(C);FailedStrcmpDoesntMatch(P);FailedStrcmpDoesntMatch(C);FailedStrcmpShouldntMatch(P);FailedStrcmpShouldntMatch(C);OutOfCallMsgs(P);OutOfCallMsgs(C);DeadCallMsgs(P);DeadCallMsgs(C);Retransmissions(P);Retransmissions(C);AutoAnswered(P);AutoAnswered(C);Warnings(P);Warnings(C);FatalErrors(P);FatalErrors(C);WatchdogMajor(P);WatchdogMajor(C);WatchdogMinor(P);WatchdogMinor(C);ResponseTime1(P);ResponseTime1(C);ResponseTime1StDev(P);ResponseTime1StDev(C);CallLength(P);CallLength(C);CallLengthStDev(P);CallLengthStDev(C);ResponseTimeRepartition1;ResponseTimeRepartition1_<10;ResponseTimeRepartition1_<20;ResponseTimeRepartition1_<50;ResponseTimeRepartition1_<100;ResponseTimeRepartition1_<200;ResponseTimeRepartition1_<500;ResponseTimeRepartition1_<1000;ResponseTimeRepartition1_>=1000;CallLengthRepartition;CallLengthRepartition_<100;CallLengthRepartition_<200;CallLengthRepartition_<500;CallLengthRepartition_<1000;CallLengthRepartition_<5000;CallLengthRepartition_<10000;CallLengthRepartition_>=10000;\n" +
	"2026-11-23	09:41:31.094446	1795426891.094446;2026-11-23	09:41:31.094446	1795426891.094446;2026-11-23	09:41:31.095557	1795426891.095557;00:00:00;00:00:00;20;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;00:00:00:000000;00:00:00:000000;00:00:00:000000;00:00:00:000000;00:00:00:000000;00:00:00:000000;00:00:00:000000;00:00:00:000000;;0;0;0;0;0;0;0;0;;0;0;0;0;0;0;0;\n" +
	"2026-11-23	09:41:31.094446	1795426891.094446;2026-11-23	09:41:31.284661	1795426891.284661;2026-11-23	09:41:31.284729	1795426891.284729;00:00:00;00:00:00;20;0;15.7895;0;0;0;3;3;0;0;3;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;00:00:00:000000;00:00:00:000000;00:00:00:000000;00:00:00:000000;00:00:00:000000;00:00:00:037000;00:00:00:000000;00:00:00:002000;;3;0;0;0;0;0;0;0;;3;0;0;0;0;0;0;\n"

func TestParseStats361(t *testing.T) {
	var r Result
	require.NoError(t, r.parseStats([]byte(stats361)))
	assert.EqualValues(t, 3, r.Created)
	assert.EqualValues(t, 3, r.Successful)
	assert.Zero(t, r.Failed)
	assert.Zero(t, r.Retransmissions)
	assert.InDelta(t, 15.7895, r.CallRate, 1e-9)
	assert.Equal(t, 37*time.Millisecond, r.CallLength)
	assert.Zero(t, r.ResponseTime)
	v, ok := r.Stat("FailedCallRejected(C)")
	assert.True(t, ok)
	assert.Equal(t, "0", v)
}

func TestParseStatsByColumnName(t *testing.T) {
	// Columns in another order, an unknown column, no trailing ';', CRLF,
	// and a truncated last line (SIPp killed while writing).
	data := "Foo;FailedCall(C);SuccessfulCall(C);TotalCallCreated;Retransmissions(C);FailedUnexpectedMessage(C);ResponseTime1(C);OutOfCallMsgs(C)\r\n" +
		"x;2;8;10;4;1;00:00:01:250000;3\r\n" +
		"x;2;8\r\n"
	var r Result
	require.NoError(t, r.parseStats([]byte(data)))
	assert.EqualValues(t, 10, r.Created)
	assert.EqualValues(t, 8, r.Successful)
	assert.EqualValues(t, 2, r.Failed)
	assert.EqualValues(t, 4, r.Retransmissions)
	assert.EqualValues(t, 1, r.UnexpectedMessages)
	assert.EqualValues(t, 3, r.OutOfCallMessages)
	assert.Equal(t, 1250*time.Millisecond, r.ResponseTime)

	require.Error(t, (&Result{}).parseStats([]byte("only;a;header;\n")))
}

func TestParseScreenFallback(t *testing.T) {
	screen := `
  Incoming calls created |        0                  |        0
  OutGoing call created  |        0                  |        7
  Total Calls created    |                           |        7
  Successful call        |        1                  |        5
  Failed call            |        0                  |        2
`
	var r Result
	r.parseScreen(screen)
	assert.EqualValues(t, 7, r.Created)
	assert.EqualValues(t, 5, r.Successful)
	assert.EqualValues(t, 2, r.Failed)
}

func TestParseSippDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"00:00:00:000000": 0,
		"00:00:00:037000": 37 * time.Millisecond,
		"01:02:03:000004": time.Hour + 2*time.Minute + 3*time.Second + 4*time.Microsecond,
		"00:00:01:500":    1500 * time.Millisecond,
		"00:00:02":        2 * time.Second,
	} {
		got, err := parseSippDuration(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	_, err := parseSippDuration("bogus")
	assert.Error(t, err)
}

func TestParseRTTAndPercentiles(t *testing.T) {
	data := "Date_ms;response_time_ms;rtd_no\n52.001;3;1\n104.001;1;1\n110;9;2\n152.001;2.5;1\n200;10;1\n"
	r := Result{ResponseTimes: parseRTT([]byte(data))}
	require.Len(t, r.ResponseTimes, 4, "RTD 2 samples are left out")
	assert.Equal(t, time.Millisecond, r.Percentile(0))
	assert.Equal(t, 2500*time.Microsecond, r.Percentile(50))
	assert.Equal(t, 10*time.Millisecond, r.Percentile(95))
	assert.Equal(t, 10*time.Millisecond, r.Percentile(100))
	assert.Zero(t, (&Result{}).Percentile(50))
	assert.Contains(t, r.Summary(), "p50=2.5ms")
}

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]VersionInfo{
		"\n SIPp v3.6.1-SCTP-PCAP-RTPSTREAM.\n\n This program is free software": {Version: "3.6.1", Features: "SCTP-PCAP-RTPSTREAM"},
		"SIPp v3.7.3-TLS-SCTP-PCAP-RTPSTREAM.":                                  {Version: "3.7.3", Features: "TLS-SCTP-PCAP-RTPSTREAM"},
		"SIPp v3.7.2.":                                                          {Version: "3.7.2"},
	} {
		got, err := parseVersion(in)
		require.NoError(t, err, in)
		assert.Equal(t, want.Version, got.Version, in)
		assert.Equal(t, want.Features, got.Features, in)
	}
	v, _ := parseVersion("SIPp v3.7.3-TLS-SCTP-PCAP-RTPSTREAM.")
	assert.True(t, v.TLS())
	_, err := parseVersion("nothing here")
	assert.Error(t, err)
}

func TestBuildArgs(t *testing.T) {
	client := buildArgs(Options{
		Scenario: "/s/uac.xml", Target: "127.0.0.1:5060", Transport: UDP, LocalIP: "127.0.0.1",
		Service: "alice", Rate: 2.5, RatePeriod: 2 * time.Second, MaxCalls: 7, CallLimit: 3,
		Keys: map[string]string{"b": "2", "a": "1"}, Vars: map[string]string{"v": "x"},
		InjectionFiles: []string{"/f.csv"}, Timeout: 1500 * time.Millisecond,
		RecvTimeout: 3 * time.Second, TraceMsg: true, TraceRTT: true, ExtraArgs: []string{"-nr"},
	}, 0)
	s := strings.Join(client, " ")
	assert.True(t, strings.HasPrefix(s, "127.0.0.1:5060 -sf /s/uac.xml -t u1 -i 127.0.0.1 -bind_local"), s)
	for _, want := range []string{
		"-s alice", "-r 2.5", "-rp 2000", "-m 7", "-l 3", "-d 100", "-timeout 2s -timeout_error",
		"-recv_timeout 3000", "-key a 1 -key b 2", "-set v x", "-inf /f.csv", "-trace_msg",
		"-trace_rtt -rtt_freq 1", "-nostdin", "-trace_stat -stf stats.csv", "-trace_err",
	} {
		assert.Contains(t, s, want)
	}
	assert.True(t, strings.HasSuffix(s, " -nr"))
	assert.NotContains(t, s, " -p ")

	server := strings.Join(buildArgs(Options{Scenario: "/s/uas.xml", Transport: TCP, LocalIP: "127.0.0.1", Pause: -1, Timeout: time.Minute}, 5070), " ")
	assert.True(t, strings.HasPrefix(server, "-sf /s/uas.xml -t t1"), server)
	assert.Contains(t, server, "-p 5070")
	assert.Contains(t, server, "-d 0")
	assert.Contains(t, server, "-timeout 60s")
	assert.NotContains(t, server, "-timeout_error")
}
