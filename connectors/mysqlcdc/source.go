package mysqlcdc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/google/uuid"

	"github.com/meshd/meshd/connectors"
)

var (
	_ connectors.SourceTask  = (*Task)(nil)
	_ connectors.Initializer = (*Task)(nil)
)

// pollWait is how long Poll waits for a row.
const pollWait = time.Second

// position is the committed offset: the binlog file and the start of the
// transaction of the last stored row, and how many rows of that transaction
// were stored. Resuming reads the transaction again and skips those rows.
//
// With gtid on, GTID is the GTID set of the transactions before that
// transaction, and resuming asks the server for what follows it (any
// server of the topology can answer; File and Pos are then informative).
type position struct {
	File string `json:"file,omitempty"`
	Pos  uint32 `json:"pos,omitempty"`
	GTID string `json:"gtid,omitempty"`
	Skip int    `json:"skip,omitempty"`
	// Snapshot is set while the initial snapshot is not finished: a task
	// restarted then takes the snapshot again.
	Snapshot bool `json:"snapshot,omitempty"`
}

// item is what the reader goroutine hands to Poll.
type item struct {
	rec connectors.Record
	err error
}

// Task reads the binlog in a goroutine that fills a bounded queue; Poll
// drains it. The goroutine blocks while the queue is full, so back-pressure
// reaches the binlog stream.
type Task struct {
	tc  connectors.TaskContext
	log *slog.Logger

	d          dsn
	tables     map[string]bool // db.table; empty: every table of allDB
	allDB      string
	prefix     string
	flavor     string
	serverID   uint32
	batchSize  int
	timeout    time.Duration
	partition  string
	gtid       bool
	unwrap     bool
	warnedMeta bool // warned that the binlog carries no column names

	start    position
	snapshot bool

	schemas *schemas
	items   chan item
	pending error // an error drained behind records, returned by the next Poll

	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// Init keeps the task context.
func (t *Task) Init(tc connectors.TaskContext) { t.tc = tc }

// Start reads the committed position (or the server's current one) and
// starts the reader.
func (t *Task) Start(ctx context.Context, cfg connectors.Config) error {
	if t.tc == nil {
		return errors.New("mysql-cdc-source task started without Init")
	}
	t.log = t.tc.Logger()
	d, err := parseURL(cfg.String(FieldURL))
	if err != nil {
		return fmt.Errorf("%s: %w", FieldURL, err)
	}
	t.d = d
	t.tables = map[string]bool{}
	for _, tb := range cfg.Strings(FieldTables) {
		if !strings.Contains(tb, ".") {
			if d.db == "" {
				return fmt.Errorf("%s: %q has no database and the URL names none", FieldTables, tb)
			}
			tb = d.db + "." + tb
		}
		t.tables[tb] = true
	}
	if len(t.tables) == 0 && d.db == "" {
		return fmt.Errorf("%s: name the tables or a database in the URL", FieldTables)
	}
	t.allDB = d.db
	t.prefix = cfg.String(FieldPrefix)
	t.flavor = cfg.String(FieldFlavor)
	t.serverID = uint32(cfg.Int(FieldServerID))
	t.batchSize = int(cfg.Int(FieldBatchSize))
	t.timeout = cfg.Duration(FieldTimeout)
	t.gtid = cfg.Bool(FieldGTID)
	t.unwrap = cfg.Bool(FieldUnwrap)
	t.partition = d.addr()
	t.schemas = &schemas{d: d, timeout: t.timeout}
	t.items = make(chan item, t.batchSize)

	off, ok := t.tc.Offsets()[t.partition]
	switch {
	case ok:
		if err := json.Unmarshal([]byte(off), &t.start); err != nil || t.start.File == "" && t.start.GTID == "" {
			return fmt.Errorf("decoding the committed offset %q of %s: %v", off, t.partition, err)
		}
		t.snapshot = t.start.Snapshot
		if t.gtid && t.start.GTID == "" && !t.snapshot { // an offset from before gtid was on
			if t.start.GTID, err = t.gtidAt(ctx, t.start, ""); err != nil {
				t.schemas.Close()
				return err
			}
		}
	case cfg.Bool(FieldSnapshot):
		t.snapshot = true
	default:
		rows, err := t.schemas.execute(ctx, t.masterStatus())
		if err != nil {
			t.schemas.Close()
			return fmt.Errorf("reading the binlog position: %w", err)
		}
		if len(rows) == 0 {
			t.schemas.Close()
			return fmt.Errorf("reading the binlog position of %s: binary logging is off (start the server with log_bin)", t.partition)
		}
		t.start = position{File: str(rows[0][0]), Pos: uint32(toInt(rows[0][1]))}
		if t.gtid {
			var executed string
			if len(rows[0]) > 4 { // MySQL: Executed_Gtid_Set
				executed = str(rows[0][4])
			}
			if t.start.GTID, err = t.gtidAt(ctx, t.start, executed); err != nil {
				t.schemas.Close()
				return err
			}
		}
	}
	rctx, cancel := context.WithCancel(context.Background())
	t.cancel = cancel
	t.wg.Go(func() { t.run(rctx) })
	return nil
}

// gtidAt returns the GTID set of the transactions before binlog position
// p: MariaDB computes it (BINLOG_GTID_POS); for MySQL it is executed, the
// Executed_Gtid_Set read with p.
func (t *Task) gtidAt(ctx context.Context, p position, executed string) (string, error) {
	if t.flavor == "mysql" {
		if executed == "" {
			return "", fmt.Errorf("%s: no GTID set for %s:%d on %s (is gtid_mode ON?)", FieldGTID, p.File, p.Pos, t.partition)
		}
		return executed, nil
	}
	rows, err := t.schemas.execute(ctx, "SELECT BINLOG_GTID_POS(?, ?)", p.File, p.Pos)
	if err != nil {
		return "", fmt.Errorf("reading the GTID set at %s:%d: %w", p.File, p.Pos, err)
	}
	if len(rows) == 0 || rows[0][0] == nil {
		return "", fmt.Errorf("%s: %s:%d is not a position in the binlogs of %s", FieldGTID, p.File, p.Pos, t.partition)
	}
	return str(rows[0][0]), nil
}

func (t *Task) masterStatus() string {
	if t.flavor == "mysql" {
		return "SHOW BINARY LOG STATUS"
	}
	return "SHOW MASTER STATUS"
}

func toInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case uint64:
		return int64(x)
	case string:
		var n int64
		_, _ = fmt.Sscan(x, &n)
		return n
	}
	return 0
}

// Stop ends the reader and waits for it.
func (t *Task) Stop(context.Context) error {
	t.stopOnce.Do(func() {
		if t.cancel != nil {
			t.cancel()
		}
		t.wg.Wait()
		if t.schemas != nil {
			t.schemas.Close()
		}
	})
	return nil
}

// Poll returns the queued rows, at most batch.size, waiting up to a second
// for the first. A reader error (the server went away) fails the task; the
// runtime starts a new one from the committed position.
func (t *Task) Poll(ctx context.Context) ([]connectors.Record, error) {
	if err := t.pending; err != nil {
		return nil, err
	}
	timer := time.NewTimer(pollWait)
	defer timer.Stop()
	var first item
	select {
	case first = <-t.items:
	case <-timer.C:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if first.err != nil {
		return nil, first.err
	}
	recs := []connectors.Record{first.rec}
	for len(recs) < t.batchSize {
		select {
		case it := <-t.items:
			if it.err != nil {
				t.pending = it.err
				return recs, nil
			}
			recs = append(recs, it.rec)
		default:
			return recs, nil
		}
	}
	return recs, nil
}

// run takes the snapshot if due, then streams the binlog until ctx is done
// or the stream fails.
func (t *Task) run(ctx context.Context) {
	err := t.read(ctx)
	if ctx.Err() != nil {
		return
	}
	select {
	case t.items <- item{err: err}:
	case <-ctx.Done():
	}
}

func (t *Task) read(ctx context.Context) error {
	pos := t.start
	if t.snapshot {
		var err error
		if pos, err = t.takeSnapshot(ctx); err != nil {
			return err
		}
	}
	return t.stream(ctx, pos)
}

func (t *Task) send(ctx context.Context, rec connectors.Record) error {
	select {
	case t.items <- item{rec: rec}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (t *Task) selected(db, tb string) bool {
	if len(t.tables) == 0 {
		return db == t.allDB
	}
	return t.tables[db+"."+tb]
}

// selectedTables lists the captured tables for the snapshot.
func (t *Task) selectedTables(ctx context.Context) ([][2]string, error) {
	var out [][2]string
	if len(t.tables) > 0 {
		for k := range t.tables {
			db, tb, _ := strings.Cut(k, ".")
			out = append(out, [2]string{db, tb})
		}
	} else {
		rows, err := t.schemas.execute(ctx, `SELECT TABLE_NAME FROM information_schema.TABLES
			WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE'`, t.allDB)
		if err != nil {
			return nil, fmt.Errorf("listing the tables of %s: %w", t.allDB, err)
		}
		for _, r := range rows {
			out = append(out, [2]string{t.allDB, str(r[0])})
		}
	}
	slicesSort(out)
	return out, nil
}

func slicesSort(l [][2]string) {
	for i := 1; i < len(l); i++ {
		for j := i; j > 0 && l[j][0]+"."+l[j][1] < l[j-1][0]+"."+l[j-1][1]; j-- {
			l[j], l[j-1] = l[j-1], l[j]
		}
	}
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// takeSnapshot emits every row of the selected tables, read in one
// consistent snapshot, and returns the binlog position of that snapshot.
// MariaDB reports the snapshot's exact position; for MySQL the position is
// read just before the snapshot, so rows changed meanwhile may come twice.
func (t *Task) takeSnapshot(ctx context.Context) (position, error) {
	conn, err := connect(ctx, t.d, t.timeout)
	if err != nil {
		return position{}, fmt.Errorf("the snapshot: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	var pos position
	if t.flavor == "mysql" {
		res, err := conn.Execute(t.masterStatus())
		if err != nil {
			return position{}, fmt.Errorf("reading the binlog position: %w", err)
		}
		if res.RowNumber() > 0 {
			f, _ := res.GetString(0, 0)
			p, _ := res.GetInt(0, 1)
			pos = position{File: f, Pos: uint32(p)}
			if t.gtid && res.ColumnNumber() > 4 {
				pos.GTID, _ = res.GetString(0, 4)
			}
		}
	}
	if _, err := conn.Execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ"); err != nil {
		return position{}, fmt.Errorf("starting the snapshot: %w", err)
	}
	if _, err := conn.Execute("START TRANSACTION WITH CONSISTENT SNAPSHOT"); err != nil {
		return position{}, fmt.Errorf("starting the snapshot: %w", err)
	}
	if t.flavor == "mariadb" {
		res, err := conn.Execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
		if err != nil {
			return position{}, fmt.Errorf("reading the snapshot's binlog position: %w", err)
		}
		for i := range res.RowNumber() {
			k, _ := res.GetString(i, 0)
			v, _ := res.GetString(i, 1)
			switch k {
			case "Binlog_snapshot_file":
				pos.File = v
			case "Binlog_snapshot_position":
				pos.Pos = uint32(toInt(v))
			}
		}
	}
	if pos.File == "" {
		return position{}, fmt.Errorf("reading the binlog position of %s: binary logging is off (start the server with log_bin)", t.partition)
	}
	if t.gtid {
		if pos.GTID, err = t.gtidAt(ctx, pos, pos.GTID); err != nil {
			return position{}, err
		}
	}
	// Streaming starts where the snapshot was taken — or, when this one
	// retakes a snapshot cut short, where the first was: rows it sent may
	// have been deleted or changed since, which only the binlog between the
	// two says. (Changes replayed after the newer snapshot rows leave each
	// row, once the stream passes this snapshot, as it is now.)
	from := pos
	if t.start.File != "" || t.start.GTID != "" {
		from = t.start
		from.Snapshot, from.Skip = false, 0
	}
	tables, err := t.selectedTables(ctx)
	if err != nil {
		return position{}, err
	}
	// The last row's offset marks the snapshot done; hold each row back
	// until the next one is read.
	var held *connectors.Record
	for _, dt := range tables {
		db, tb := dt[0], dt[1]
		shape, err := t.schemas.table(ctx, db, tb, -1)
		if err != nil {
			return position{}, err
		}
		q := "SELECT * FROM " + quoteIdent(db) + "." + quoteIdent(tb)
		if len(shape.pk) > 0 {
			var order []string
			for _, i := range shape.pk {
				order = append(order, quoteIdent(shape.cols[i].name))
			}
			q += " ORDER BY " + strings.Join(order, ", ")
		}
		var res gomysql.Result
		n := 0
		var sendErr error
		err = conn.ExecuteSelectStreaming(q, &res, func(row []gomysql.FieldValue) error {
			vals := make([]any, len(row))
			for i := range row {
				vals[i] = row[i].Value()
			}
			n++
			recs, err := t.records(shape, db, tb, "snapshot", fmt.Sprintf("snapshot:%s:%d:%s.%s:%d", pos.File, pos.Pos, db, tb, n), nil, vals, false, time.Now(), "", pos)
			if err != nil {
				return err
			}
			rec := recs[0]
			rec.Offset = offset(position{File: from.File, Pos: from.Pos, GTID: from.GTID, Snapshot: true})
			if held != nil {
				if sendErr = t.send(ctx, *held); sendErr != nil {
					return sendErr
				}
			}
			held = &rec
			return nil
		}, nil)
		if err != nil {
			if ctx.Err() != nil {
				return position{}, ctx.Err()
			}
			return position{}, fmt.Errorf("reading the snapshot of %s.%s: %w", db, tb, err)
		}
	}
	if held != nil {
		held.Offset = offset(from)
		if err := t.send(ctx, *held); err != nil {
			return position{}, err
		}
	}
	_, _ = conn.Execute("COMMIT")
	return from, nil
}

func offset(p position) string {
	b, _ := json.Marshal(p)
	return string(b)
}

// stream reads the binlog from pos. It returns when ctx is done or the
// stream fails; the task then fails and is restarted from the committed
// position (a reconnect in place could not resume inside a transaction).
func (t *Task) stream(ctx context.Context, pos position) error {
	syncer := replication.NewBinlogSyncer(replication.BinlogSyncerConfig{
		ServerID:             t.serverID,
		Flavor:               t.flavor,
		Host:                 t.d.host,
		Port:                 t.d.port,
		User:                 t.d.user,
		Password:             t.d.password,
		TLSConfig:            t.d.tls,
		HeartbeatPeriod:      t.timeout / 3,
		ReadTimeout:          t.timeout,
		MaxReconnectAttempts: 1,
		DisableRetrySync:     true,
		Logger:               slog.New(warnOnly{t.log.Handler()}),
	})
	defer syncer.Close()
	var (
		streamer *replication.BinlogStreamer
		gset     gomysql.GTIDSet // with gtid: the transactions before the current one
		startSet string          // gset at the start, in gset's own spelling
		err      error
	)
	if t.gtid {
		if gset, err = gomysql.ParseGTIDSet(t.flavor, pos.GTID); err != nil {
			return fmt.Errorf("reading the GTID set %q: %w", pos.GTID, err)
		}
		startSet = gset.String()
		streamer, err = syncer.StartSyncGTID(gset.Clone())
	} else {
		streamer, err = syncer.StartSync(gomysql.Position{Name: pos.File, Pos: pos.Pos})
	}
	if err != nil {
		return fmt.Errorf("starting the binlog stream of %s at %s: %w", t.partition, offset(pos), err)
	}
	file := pos.File
	var (
		txStart uint32 = pos.Pos
		inTx    bool
		row     int    // rows of the transaction so far, captured or not
		skip    int    // rows of the transaction stored before
		xid     string // the transaction's GTID
		txSet   string // with gtid: the set before the transaction
	)
	begin := func(h *replication.EventHeader) {
		txStart, inTx, row, xid = h.LogPos-h.EventSize, true, 0, ""
		skip = 0
		if !t.gtid && file == pos.File && txStart == pos.Pos {
			skip = pos.Skip
		}
	}
	// gtidBegin starts a transaction known by its GTID.
	gtidBegin := func(h *replication.EventHeader, gtid string) error {
		begin(h)
		xid = gtid
		if !t.gtid {
			return nil
		}
		txSet = gset.String()
		if txSet == startSet {
			skip = pos.Skip
		}
		if err := gset.Update(gtid); err != nil {
			return fmt.Errorf("following GTID %s: %w", gtid, err)
		}
		return nil
	}
	for {
		ev, err := streamer.GetEvent(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("reading the binlog of %s: %w", t.partition, err)
		}
		h := ev.Header
		switch e := ev.Event.(type) {
		case *replication.RotateEvent:
			file = string(e.NextLogName)
		case *replication.MariadbGTIDEvent:
			if err := gtidBegin(h, e.GTID.String()); err != nil {
				return err
			}
		case *replication.GTIDEvent:
			u, err := uuid.FromBytes(e.SID)
			if err != nil {
				return fmt.Errorf("reading a GTID event: %w", err)
			}
			if err := gtidBegin(h, fmt.Sprintf("%s:%d", u, e.GNO)); err != nil {
				return err
			}
		case *replication.QueryEvent:
			switch q := strings.ToUpper(strings.TrimSpace(string(e.Query))); q {
			case "BEGIN":
				if !inTx {
					begin(h)
				}
			case "COMMIT":
				inTx = false
			default: // DDL: shapes may have changed
				t.schemas.forget()
				inTx = false
				if db, tb, ok := truncated(string(e.Schema), string(e.Query)); ok && t.selected(db, tb) {
					p := position{File: file, Pos: h.LogPos}
					if t.gtid {
						p.GTID = gset.String()
					}
					rec := t.truncateRecord(db, tb, fmt.Sprintf("%s:%d:truncate", file, h.LogPos-h.EventSize), time.Unix(int64(h.Timestamp), 0), xid, position{File: file, Pos: h.LogPos})
					rec.Offset = offset(p)
					if err := t.send(ctx, rec); err != nil {
						return err
					}
				}
			}
		case *replication.XIDEvent:
			inTx = false
		case *replication.RowsEvent:
			op, step := "", 1
			switch h.EventType {
			case replication.WRITE_ROWS_EVENTv0, replication.WRITE_ROWS_EVENTv1, replication.WRITE_ROWS_EVENTv2,
				replication.MARIADB_WRITE_ROWS_COMPRESSED_EVENT_V1:
				op = "inserted"
			case replication.UPDATE_ROWS_EVENTv0, replication.UPDATE_ROWS_EVENTv1, replication.UPDATE_ROWS_EVENTv2,
				replication.MARIADB_UPDATE_ROWS_COMPRESSED_EVENT_V1, replication.PARTIAL_UPDATE_ROWS_EVENT:
				op, step = "updated", 2
			case replication.DELETE_ROWS_EVENTv0, replication.DELETE_ROWS_EVENTv1, replication.DELETE_ROWS_EVENTv2,
				replication.MARIADB_DELETE_ROWS_COMPRESSED_EVENT_V1:
				op = "deleted"
			default:
				continue
			}
			if t.gtid && xid == "" {
				return fmt.Errorf("%s: a transaction without a GTID on %s (MySQL needs gtid_mode=ON)", FieldGTID, t.partition)
			}
			db, tb := string(e.Table.Schema), string(e.Table.Table)
			want := t.selected(db, tb)
			var shape *table
			if want {
				if shape, err = t.shape(ctx, db, tb, e.Table); err != nil {
					return err
				}
			}
			for i := 0; i+step <= len(e.Rows); i += step {
				row++
				if !want || row <= skip {
					continue
				}
				var before, after []any
				switch op {
				case "inserted":
					after = e.Rows[i]
				case "deleted":
					before = e.Rows[i]
				default:
					before, after = e.Rows[i], e.Rows[i+1]
				}
				id := fmt.Sprintf("%s:%d:%d", file, txStart, row)
				recs, err := t.records(shape, db, tb, op, id, before, after, true, time.Unix(int64(h.Timestamp), 0), xid, position{File: file, Pos: h.LogPos})
				if err != nil {
					return fmt.Errorf("decoding row %s of %s.%s: %w", id, db, tb, err)
				}
				for i := range recs {
					// A record before the row's last (the tombstone of an
					// old key) leaves the row to be read again.
					recs[i].Offset = offset(position{File: file, Pos: txStart, GTID: txSet, Skip: row - (len(recs) - 1 - i)})
					if err := t.send(ctx, recs[i]); err != nil {
						return err
					}
				}
			}
		}
	}
}

// shape is the shape of db.tb that a rows event was written with. With
// binlog_row_metadata=FULL its table map names the columns: each is
// matched by name to the table's current columns (types, charsets, enum
// values, JSON), and a column dropped since is described from the table
// map alone — so a row written before an ALTER TABLE keeps its values in
// their columns. Without names, the current columns are taken when their
// count matches (a warning says to turn FULL on).
func (t *Task) shape(ctx context.Context, db, tb string, tm *replication.TableMapEvent) (*table, error) {
	cur, err := t.schemas.table(ctx, db, tb, -1)
	if err != nil {
		return nil, err
	}
	names := tm.ColumnNameString()
	if len(names) != int(tm.ColumnCount) {
		if !t.warnedMeta {
			t.warnedMeta = true
			t.log.Warn("the binlog carries no column names: rows written before an ALTER TABLE may be decoded with the columns of after it; set binlog_row_metadata=FULL on the server")
		}
		if len(cur.cols) != int(tm.ColumnCount) {
			return t.schemas.table(ctx, db, tb, int(tm.ColumnCount))
		}
		return cur, nil
	}
	if len(cur.cols) == len(names) {
		same := true
		for i, n := range names {
			same = same && cur.cols[i].name == n
		}
		if same {
			return cur, nil
		}
	}
	byName := make(map[string]column, len(cur.cols))
	for _, c := range cur.cols {
		byName[c.name] = c
	}
	unsigned, collations := tm.UnsignedMap(), tm.CollationMap()
	enums, sets := tm.EnumStrValueMap(), tm.SetStrValueMap()
	out := &table{}
	for i, n := range names {
		c, ok := byName[n]
		if !ok {
			c = column{name: n, dataType: binlogType(tm.ColumnType[i], collations[i] != 0), unsigned: unsigned[i]}
			if id, ok := collations[i]; ok {
				c.charset = t.schemas.charsetOf(ctx, id)
			}
			if v, ok := enums[i]; ok {
				c.dataType, c.enum = "enum", v
			}
			if v, ok := sets[i]; ok {
				c.dataType, c.enum = "set", v
			}
		}
		out.cols = append(out.cols, c)
	}
	if len(tm.PrimaryKey) > 0 {
		for _, k := range tm.PrimaryKey {
			out.pk = append(out.pk, int(k))
		}
	} else {
		for _, k := range cur.pk {
			if j := slices.Index(names, cur.cols[k].name); j >= 0 {
				out.pk = append(out.pk, j)
			}
		}
	}
	return out, nil
}

// binlogType names the type of a column known only from a table map.
func binlogType(typ byte, text bool) string {
	switch typ {
	case gomysql.MYSQL_TYPE_TINY:
		return "tinyint"
	case gomysql.MYSQL_TYPE_SHORT:
		return "smallint"
	case gomysql.MYSQL_TYPE_INT24:
		return "mediumint"
	case gomysql.MYSQL_TYPE_LONG:
		return "int"
	case gomysql.MYSQL_TYPE_LONGLONG:
		return "bigint"
	case gomysql.MYSQL_TYPE_FLOAT:
		return "float"
	case gomysql.MYSQL_TYPE_DOUBLE:
		return "double"
	case gomysql.MYSQL_TYPE_JSON:
		return "json"
	case gomysql.MYSQL_TYPE_BLOB, gomysql.MYSQL_TYPE_VARCHAR, gomysql.MYSQL_TYPE_VAR_STRING, gomysql.MYSQL_TYPE_STRING:
		if text {
			return "text"
		}
		return "blob"
	}
	return "unknown"
}

// Debezium's op codes, in the cdcop extension of every event.
var opCodes = map[string]string{"inserted": "c", "updated": "u", "deleted": "d", "snapshot": "r"}

// records builds the events of one row change: one, or with unwrap an
// update that changed the primary key, a tombstone of the old key then
// the row. at is the binlog position shown in the cdcpos extension;
// binlog says the values come from the binlog (text in the columns'
// charsets) rather than a snapshot.
func (t *Task) records(shape *table, db, tb, op, id string, before, after []any, binlog bool, ts time.Time, xid string, at position) ([]connectors.Record, error) {
	img := func(vals []any) (map[string]any, error) {
		if vals == nil {
			return nil, nil
		}
		m := make(map[string]any, len(vals))
		for i, v := range vals {
			if i < len(shape.cols) {
				x, err := shape.cols[i].value(v, binlog)
				if err != nil {
					return nil, err
				}
				m[shape.cols[i].name] = x
			}
		}
		return m, nil
	}
	b, err := img(before)
	if err != nil {
		return nil, err
	}
	a, err := img(after)
	if err != nil {
		return nil, err
	}
	key := a
	if key == nil {
		key = b
	}
	mk := func(id, typ, cdcop, subject string) event.Event {
		e := event.New()
		e.SetID(id)
		e.SetSource(fmt.Sprintf("mysql://%s/%s/%s", t.partition, db, tb))
		e.SetType(typ)
		e.SetTime(ts)
		if subject != "" {
			e.SetSubject(subject)
		}
		e.SetExtension("cdcdb", db)
		e.SetExtension("cdctable", tb)
		e.SetExtension("cdcpos", fmt.Sprintf("%s:%d", at.File, at.Pos))
		e.SetExtension("cdcop", cdcop)
		if xid != "" {
			e.SetExtension("cdcxid", xid)
		}
		return e
	}
	typ := t.prefix + ".row." + op
	if !t.unwrap {
		e := mk(id, typ, opCodes[op], t.subject(shape, key, false))
		if err := e.SetData(event.ApplicationJSON, map[string]any{"before": b, "after": a}); err != nil {
			return nil, fmt.Errorf("encoding the change: %w", err)
		}
		return []connectors.Record{{Event: e, Partition: t.partition}}, nil
	}
	var out []connectors.Record
	if op == "updated" && len(shape.pk) > 0 {
		if old := t.subject(shape, b, true); old != t.subject(shape, a, true) {
			out = append(out, connectors.Record{Event: mk(id+":oldkey", t.prefix+".row.deleted", "d", old), Partition: t.partition})
		}
	}
	e := mk(id, typ, opCodes[op], t.subject(shape, key, true))
	if a != nil {
		if err := e.SetData(event.ApplicationJSON, a); err != nil {
			return nil, fmt.Errorf("encoding the row: %w", err)
		}
	}
	return append(out, connectors.Record{Event: e, Partition: t.partition}), nil
}

// subject is the primary key of a row image: its values joined by commas,
// or with unwrap what sinks read as a tombstone's key — the value of a
// one-column key, a JSON object of several.
func (t *Task) subject(shape *table, img map[string]any, unwrap bool) string {
	if len(shape.pk) == 0 || img == nil {
		return ""
	}
	if unwrap && len(shape.pk) > 1 {
		m := make(map[string]any, len(shape.pk))
		for _, i := range shape.pk {
			m[shape.cols[i].name] = img[shape.cols[i].name]
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	parts := make([]string, 0, len(shape.pk))
	for _, i := range shape.pk {
		parts = append(parts, fmt.Sprint(derefJSON(img[shape.cols[i].name])))
	}
	return strings.Join(parts, ",")
}

// truncateRecord is the event of a TRUNCATE TABLE: type
// <prefix>.table.truncated, no data, cdcop t.
func (t *Task) truncateRecord(db, tb, id string, ts time.Time, xid string, at position) connectors.Record {
	e := event.New()
	e.SetID(id)
	e.SetSource(fmt.Sprintf("mysql://%s/%s/%s", t.partition, db, tb))
	e.SetType(t.prefix + ".table.truncated")
	e.SetTime(ts)
	e.SetExtension("cdcdb", db)
	e.SetExtension("cdctable", tb)
	e.SetExtension("cdcpos", fmt.Sprintf("%s:%d", at.File, at.Pos))
	e.SetExtension("cdcop", "t")
	if xid != "" {
		e.SetExtension("cdcxid", xid)
	}
	return connectors.Record{Event: e, Partition: t.partition}
}

var truncateRe = regexp.MustCompile("(?i)^TRUNCATE\\s+(?:TABLE\\s+)?(?:`((?:[^`]|``)+)`|([\\w$]+))(?:\\.(?:`((?:[^`]|``)+)`|([\\w$]+)))?\\s*;?$")

// truncated reads the table of a TRUNCATE statement run in database
// schema.
func truncated(schema, query string) (db, tb string, ok bool) {
	m := truncateRe.FindStringSubmatch(strings.TrimSpace(query))
	if m == nil {
		return "", "", false
	}
	first := strings.ReplaceAll(m[1]+m[2], "``", "`")
	second := strings.ReplaceAll(m[3]+m[4], "``", "`")
	if second == "" {
		return schema, first, true
	}
	return first, second, true
}

func derefJSON(v any) any {
	switch x := v.(type) {
	case json.RawMessage:
		return string(x)
	case []byte:
		return string(x)
	}
	return v
}

// warnOnly passes go-mysql's warnings and errors to the task's logger and
// drops its chatter.
type warnOnly struct{ slog.Handler }

func (w warnOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && w.Handler.Enabled(ctx, l)
}
