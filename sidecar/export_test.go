package sidecar

// UnknownEnvNames exposes unknownEnv to the external tests (which may
// import deploy/injector, which imports sidecar).
func UnknownEnvNames(environ []string) []string {
	var names []string
	for _, w := range unknownEnv(environ) {
		names = append(names, w.name)
	}
	return names
}
