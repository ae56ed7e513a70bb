package rocketmq

import "github.com/apache/rocketmq-client-go/v2/rlog"

// InstallClientLog puts clientLog in place of the client's logger, as the
// first connector that starts does; tests call it before any client runs
// (replacing the client's logger races with a running client).
func InstallClientLog() { clientLogOnce.Do(func() { rlog.SetLogger(clientLogs) }) }

// AttachClientLog is attachClientLog.
var AttachClientLog = attachClientLog
