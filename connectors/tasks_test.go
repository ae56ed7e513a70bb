package connectors

import (
	"slices"
	"testing"
)

func TestSplits(t *testing.T) {
	c := NewConnector(func() Task { return nil }, SplitList("table"))
	if err := c.Start(t.Context(), Config{"table": []string{"a", "b", "c"}, "url": "u"}); err != nil {
		t.Fatal(err)
	}
	cfgs, _ := c.TaskConfigs(2)
	if len(cfgs) != 2 || !slices.Equal(cfgs[0].Strings("table"), []string{"a", "c"}) || !slices.Equal(cfgs[1].Strings("table"), []string{"b"}) {
		t.Fatalf("SplitList over 2 tasks: %v", cfgs)
	}
	if cfgs[1].String("url") != "u" {
		t.Errorf("a split config lost the other fields: %v", cfgs[1])
	}
	if cfgs, _ = c.TaskConfigs(8); len(cfgs) != 3 {
		t.Errorf("SplitList of 3 items over 8 tasks gave %d configs, want 3", len(cfgs))
	}
	if got := SplitList("table")(Config{"query": "q"}, 4); len(got) != 1 || got[0].String("query") != "q" {
		t.Errorf("SplitList without items: %v, want one task with the instance config", got)
	}
	cfg := Config{"topic": []string{"x"}}
	if got := EveryTask(cfg, 3); len(got) != 3 {
		t.Errorf("EveryTask(3) gave %d configs", len(got))
	}
	got := OneTask(cfg, 5)
	if len(got) != 1 {
		t.Fatalf("OneTask(5) gave %d configs", len(got))
	}
	got[0]["topic"] = []string{"changed"}
	if cfg.Strings("topic")[0] != "x" {
		t.Error("a task config shares its list with the instance config")
	}
}
