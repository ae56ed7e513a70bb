package injector

import "errors"

var (
	// ErrInvalidConfig is a bad injector Config (a flag or a chart value).
	ErrInvalidConfig = errors.New("invalid injector config")
	// ErrInvalidAnnotation is a meshd.io/* annotation whose value cannot be
	// understood. The pod is admitted without a sidecar unless
	// Config.RejectInvalid is set.
	ErrInvalidAnnotation = errors.New("invalid annotation")
	// ErrBadManifest is an input document meshd inject cannot read.
	ErrBadManifest = errors.New("bad manifest")
	// ErrBadPod is a pod (or pod template) in which a field the injector
	// reads does not have the JSON type the Kubernetes API gives it.
	ErrBadPod = errors.New("pod cannot be read")
)

// ErrConflict is a pod that cannot take the sidecar as it is, such as one
// that already has a volume of the name meshd uses.
var ErrConflict = errors.New("pod conflicts with the sidecar")
