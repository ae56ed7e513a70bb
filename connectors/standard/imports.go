// Package standard registers the connector types meshd ships: import it for
// its side effects.
package standard

import (
	// The shipped connectors; each registers its spec in init.
	_ "github.com/meshd/meshd/connectors/chatgpt"
	_ "github.com/meshd/meshd/connectors/clickhouse"
	_ "github.com/meshd/meshd/connectors/dingtalk"
	_ "github.com/meshd/meshd/connectors/email"
	_ "github.com/meshd/meshd/connectors/feishu"
	_ "github.com/meshd/meshd/connectors/github"
	_ "github.com/meshd/meshd/connectors/httpsink"
	_ "github.com/meshd/meshd/connectors/httpsource"
	_ "github.com/meshd/meshd/connectors/jdbc"
	_ "github.com/meshd/meshd/connectors/mongodb"
	_ "github.com/meshd/meshd/connectors/mysqlcdc"
	_ "github.com/meshd/meshd/connectors/rocketmq"
	_ "github.com/meshd/meshd/connectors/s3"
)
