package github_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshd/meshd/connectors"
	"github.com/meshd/meshd/connectors/github"
	"github.com/meshd/meshd/connectors/httpsource"
	"github.com/meshd/meshd/connectors/internal/webhook"
	"github.com/meshd/meshd/connectors/worker"
	"github.com/meshd/meshd/mesh/embedded"
	"github.com/meshd/meshd/test/infra"
)

// BenchmarkDeliveries measures signed push deliveries (8 KB) answered per
// second, each stored in an embedded mesh before its 204, through
// github-source and — the baseline, in the same run — through http-source
// with the same body and HMAC, which wraps the body without reading it.
// The ratio is github-source's cost of parsing and mapping the payload.
func BenchmarkDeliveries(b *testing.B) {
	eng, err := embedded.Open(b.Context(), embedded.Config{DataDir: b.TempDir()})
	require.NoError(b, err)
	b.Cleanup(func() { _ = eng.Close() })
	reg := connectors.NewRegistry()
	reg.Register(github.Spec)
	reg.Register(httpsource.Spec)
	addr := infra.FreeAddr(b)
	rt, err := worker.New(worker.Options{Engine: eng, Registry: reg, WebhookListen: addr})
	require.NoError(b, err)
	require.NoError(b, rt.Start(b.Context()))
	b.Cleanup(func() { _ = rt.Stop(context.Background()) })
	for name, cfg := range map[string]map[string]any{
		"gh":    {"connector.type": "github-source", "topic": "bench-gh", "path": "/gh", "secret": secret},
		"plain": {"connector.type": "http-source", "topic": "bench-plain", "path": "/plain", "hmac.secret": secret},
	} {
		_, err := rt.Create(b.Context(), name, cfg)
		require.NoError(b, err)
		require.Eventually(b, func() bool {
			st, err := rt.Status(name)
			return err == nil && len(st.Tasks) == 1 && st.Tasks[0].State == worker.StateRunning
		}, 10*time.Second, 10*time.Millisecond)
	}
	payload, err := os.ReadFile(filepath.Join("testdata", "push.json"))
	require.NoError(b, err)
	sig := webhook.SignSHA256(payload, []byte(secret))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	var seq atomic.Int64
	run := func(path string, n int) time.Duration {
		const workers = 8
		var wg sync.WaitGroup
		var failed atomic.Int64
		start := time.Now()
		for w := range workers {
			wg.Go(func() {
				for i := w; i < n; i += workers {
					req, _ := http.NewRequest(http.MethodPost, "http://"+addr+path, bytes.NewReader(payload))
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set(github.HeaderEvent, "push")
					req.Header.Set(github.HeaderDelivery, fmt.Sprintf("bench-%d", seq.Add(1)))
					req.Header.Set(github.HeaderSignature, sig)
					resp, err := client.Do(req)
					if err != nil || resp.StatusCode != http.StatusNoContent {
						failed.Add(1)
					}
					if resp != nil {
						resp.Body.Close()
					}
				}
			})
		}
		wg.Wait()
		if f := failed.Load(); f > 0 {
			b.Errorf("%d of %d deliveries to %s were not answered 204", f, n, path)
		}
		return time.Since(start)
	}
	run("/gh", 200) // warm up both
	run("/plain", 200)
	b.ResetTimer()
	gh := run("/gh", b.N)
	plain := run("/plain", b.N)
	b.StopTimer()
	ghRate, plainRate := float64(b.N)/gh.Seconds(), float64(b.N)/plain.Seconds()
	b.ReportMetric(ghRate, "github/s")
	b.ReportMetric(plainRate, "http-source/s")
	b.ReportMetric(ghRate/plainRate, "ratio")
	b.Logf("%d signed 8 KB deliveries, 8 senders: github-source %.0f/s, http-source (baseline) %.0f/s, ratio %.2f", b.N, ghRate, plainRate, ghRate/plainRate)
}
