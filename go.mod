module github.com/meshd/meshd

go 1.26.8

require (
	github.com/cloudevents/sdk-go/v2 v2.16.2
	go.opentelemetry.io/otel/metric v1.45.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/json-iterator/go v1.1.12 // indirect
	github.com/modern-go/concurrent v0.0.0-20180306012644-bacd9c7ef1dd // indirect
	github.com/modern-go/reflect2 v1.0.2 // indirect
	go.opentelemetry.io/otel v1.45.0 // indirect
)
