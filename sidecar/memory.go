package sidecar

import (
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// cgroupMemoryMax is where a cgroup v2 container's memory limit is read.
const cgroupMemoryMax = "/sys/fs/cgroup/memory.max"

// setMemoryLimit sets the Go runtime's soft memory limit from memory.limitMB,
// or from the container's limit: a sidecar shares its pod's memory with the
// app, so it returns memory to the system as it nears the limit instead of
// growing its heap to twice what it uses. A GOMEMLIMIT in the environment
// wins over both.
func setMemoryLimit(cfg MemoryConfig, log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit := int64(cfg.LimitMB) << 20
	from := "memory.limitMB"
	if limit == 0 {
		limit, from = containerLimit()*9/10, "90% of the container's memory limit"
	}
	if limit <= 0 {
		return
	}
	debug.SetMemoryLimit(limit)
	log.Debug("memory limit set", "limit_mb", limit>>20, "from", from)
}

// containerLimit is the cgroup v2 memory limit in bytes, 0 when there is
// none (or it is "max").
func containerLimit() int64 {
	b, err := os.ReadFile(cgroupMemoryMax)
	if err != nil {
		return 0
	}
	v := strings.TrimSpace(string(b))
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 || n >= math.MaxInt64/2 {
		return 0
	}
	return n
}
