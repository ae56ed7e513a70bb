// Package deploy holds what ships meshd to machines rather than code: the
// container image (Dockerfile), the Helm chart of the sidecar injector
// (helm/meshd-injector), plain manifests rendered from it (kubernetes/), and
// the injector itself (package injector). Its tests render the chart and
// check every object against the k8s.io/api types.
package deploy
