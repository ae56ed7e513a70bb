package connectors

import "context"

// Split divides an instance's config into at most maxTasks task configs
// (at least one).
type Split func(cfg Config, maxTasks int) []Config

// NewConnector returns the Connector of a type whose instance holds
// nothing but its config, as most do: Start keeps the config, Stop does
// nothing, NewTask calls newTask and TaskConfigs is split.
func NewConnector(newTask func() Task, split Split) Connector {
	return &connector{newTask: newTask, split: split}
}

type connector struct {
	cfg     Config
	newTask func() Task
	split   Split
}

func (c *connector) Start(_ context.Context, cfg Config) error {
	c.cfg = cfg
	return nil
}

func (c *connector) Stop(context.Context) error { return nil }

func (c *connector) NewTask() Task { return c.newTask() }

func (c *connector) TaskConfigs(maxTasks int) ([]Config, error) {
	return c.split(c.cfg, max(maxTasks, 1)), nil
}

// OneTask runs one task with the instance config: work that one reader
// must do (a cursor, a replication stream, a listened path).
func OneTask(cfg Config, _ int) []Config { return []Config{cfg.Clone()} }

// EveryTask runs maxTasks tasks with the instance config: sinks, whose
// tasks share the instance's consumer group.
func EveryTask(cfg Config, maxTasks int) []Config {
	out := make([]Config, maxTasks)
	for i := range out {
		out[i] = cfg.Clone()
	}
	return out
}

// SplitList deals the items of a list field (tables, files) out between
// at most maxTasks tasks, round robin; with the list empty, one task gets
// the instance config.
func SplitList(field string) Split {
	return func(cfg Config, maxTasks int) []Config {
		items := cfg.Strings(field)
		n := min(maxTasks, max(len(items), 1))
		out := make([]Config, n)
		for i := range out {
			out[i] = cfg.Clone()
			if len(items) > 0 {
				var mine []string
				for j := i; j < len(items); j += n {
					mine = append(mine, items[j])
				}
				out[i][field] = mine
			}
		}
		return out
	}
}
