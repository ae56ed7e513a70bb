# meshd — see README.md. The two commands a newcomer needs: make run, make test.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/meshd/meshd/sidecar.Version=$(VERSION)
ARGS    ?=

.PHONY: all build build-lean run test deps vet unit bench soak fmt clean

all: build

## build: compile bin/meshd
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/meshd ./sidecar/cmd/meshd

## build-lean: compile bin/meshd-lean, without the data connectors (S3, ClickHouse, JDBC, MongoDB,
## MySQL CDC): a smaller sidecar for pods that publish, subscribe and run the light connectors
build-lean:
	$(GO) build -trimpath -tags meshd_lean -ldflags '$(LDFLAGS)' -o bin/meshd-lean ./sidecar/cmd/meshd

## run: start meshd in the foreground on the embedded mesh (data in ./data); ARGS='--log.level debug'
run: build
	./bin/meshd run $(ARGS)

## deps: install what the tests need when it is missing
deps:
	bash test/install-deps.sh

## test: install test dependencies, vet, then every test (unit, conformance, end-to-end) with the race detector
test: deps vet
	$(GO) test -race -shuffle=on -count=1 -timeout 20m ./...
	@# The official RocketMQ client's consumers race with themselves (v2.1.2): the tests that
	@# validate the test broker with them build without -race only.
	$(GO) test -shuffle=on -count=1 -timeout 5m ./test/infra/rocketmq/

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

## unit: the tests without the race detector (faster while developing)
unit:
	$(GO) test -count=1 ./...

## bench: the publish/delivery benchmark (prints a RESULT line), the Go micro-benchmarks and
## the sink benchmarks (the runtime's delivery to a no-op sink beside a plain consumer; jdbc-sink into PostgreSQL beside plain pgx and pgx COPY; a PostgreSQL table copied by jdbc-source → jdbc-sink beside a COPY pipe; clickhouse-sink's Put beside
## the bare driver; s3-sink and s3-source beside the bare AWS SDK on versitygw; each with its ratio)
bench: build build-lean deps
	$(GO) run ./test/bench -lean bin/meshd-lean
	$(GO) test -run '^$$' -bench . -benchmem ./mesh/... ./protocols/... ./bridge/...
	$(GO) test -run '^$$' -bench SinkDelivery -benchtime 1x ./connectors/worker/
	$(GO) test -run '^$$' -bench 'SinkPostgres|TableCopyPostgres' -benchtime 1x ./connectors/jdbc/
	$(GO) test -run '^$$' -bench SinkPut -benchtime 1x ./connectors/clickhouse/
	$(GO) test -run '^$$' -bench SinkPut -benchtime 1x ./connectors/email/
	$(GO) test -run '^$$' -bench . -benchtime 20x ./connectors/rocketmq/
	$(GO) test -run '^$$' -bench Deliveries -benchtime 3000x ./connectors/github/
	$(GO) test -run '^$$' -bench SinkPut -benchtime 1x ./connectors/dingtalk/
	$(GO) test -run '^$$' -bench 'SinkPut|SourceRead' -benchtime 1x ./connectors/s3/

## soak: a long publish/deliver run with restarts (see test/bench), an edge cut off from its hub for 5 minutes, and the fleet failover test with long phases
soak: build
	$(GO) run ./test/bench -soak 10m
	MESHD_E2E_EDGE_CUT=5m $(GO) test -count=1 -timeout 15m -run TestEdgeKeepsAcceptingWhileCutOffFromTheHub -v ./test/e2e/
	FLEET_LONG=1 $(GO) test -count=1 -v -run TestFleetSurvivesClusterFailures -timeout 20m ./test/e2e/

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
