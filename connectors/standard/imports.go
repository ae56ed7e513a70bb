// Package standard registers the connector types meshd ships: import it for
// its side effects.
//
// The connectors whose drivers weigh most (S3, ClickHouse, the JDBC
// databases, MongoDB, MySQL CDC: together about 29 MB of the binary and a
// third of its idle memory) are in imports_data.go, left out by the build
// tag meshd_lean: `make build-lean` is the sidecar for pods that only
// publish, subscribe and run the light connectors.
package standard

import (
	// The shipped connectors; each registers its spec in init.
	_ "github.com/meshd/meshd/connectors/chatgpt"
	_ "github.com/meshd/meshd/connectors/dingtalk"
	_ "github.com/meshd/meshd/connectors/email"
	_ "github.com/meshd/meshd/connectors/feishu"
	_ "github.com/meshd/meshd/connectors/github"
	_ "github.com/meshd/meshd/connectors/httpsink"
	_ "github.com/meshd/meshd/connectors/httpsource"
	_ "github.com/meshd/meshd/connectors/rocketmq"
)

// dataTypes are the connector types of the packages in imports_data.go.
var dataTypes = []string{
	"clickhouse-sink", "clickhouse-source", "jdbc-sink", "jdbc-source", "mongodb-sink", "mongodb-source",
	"mysql-cdc-source", "s3-sink", "s3-source",
}
