namespace Cdc.Configuration;

/// <summary>The connector's configuration, bound from the <c>Cdc</c> section (appsettings.json, then environment).</summary>
public sealed class CdcOptions
{
    public const string Section = "Cdc";

    public PostgresOptions Postgres { get; set; } = new();
    public KafkaOptions Kafka { get; set; } = new();
    public RelayOptions Relay { get; set; } = new();
}

public sealed class PostgresOptions
{
    /// <summary>Npgsql connection string; the role needs REPLICATION (not superuser).</summary>
    public string ConnectionString { get; set; } = "";

    /// <summary>
    /// The outbox table, <c>schema.table</c> (or just <c>table</c> for <c>public</c>). Empty for the table-less mode,
    /// where services only emit events with <c>pg_logical_emit_message</c>.
    /// </summary>
    public string Table { get; set; } = "public.outbox";

    /// <summary>
    /// Prefix of the transactional logical decoding messages relayed as events (table-less mode): each message's
    /// content is a serialized <c>cdc.outbox.v1.OutboxEvent</c>. Empty (the default): messages are not relayed.
    /// Messages are database-wide (every slot sees them), so each connector on a database needs its own prefix.
    /// </summary>
    public string MessagePrefix { get; set; } = "";

    /// <summary>Logical replication slot (pgoutput), created if missing.</summary>
    public string Slot { get; set; } = "cdc_outbox";

    /// <summary>Publication, created if missing as <c>FOR TABLE &lt;table&gt; WITH (publish = 'insert')</c> (no table in table-less mode).</summary>
    public string Publication { get; set; } = "cdc_outbox";

    /// <summary>
    /// Optional retention job for users who keep outbox rows (e.g. for auditing): rows older than this whose
    /// transaction the slot has confirmed are deleted, in batches, about every minute. Unset: the connector deletes
    /// nothing (delete in the writing transaction instead). The role then needs DELETE on the table.
    /// </summary>
    public TimeSpan? Retention { get; set; }

    /// <summary>
    /// What to do when the slot is lost: invalidated (<c>wal_status = 'lost'</c>) or gone (dropped, or a failover to a
    /// server without it) after the connector confirmed a position in it (known from the checkpoint).
    /// </summary>
    public LostSlotPolicy LostSlotPolicy { get; set; } = LostSlotPolicy.Stop;

    /// <summary><c>Initial</c>: when the connector creates the slot, it first relays the rows already in the table.</summary>
    public SnapshotMode Snapshot { get; set; } = SnapshotMode.Never;

    /// <summary>How far before the last confirmed commit time a backfill starts reading <c>created_at</c>.</summary>
    public TimeSpan BackfillMargin { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Prefix of transactional <c>pg_logical_emit_message</c> signals to this connector (re-publishing rows of the
    /// table). Empty: signals are off.
    /// </summary>
    public string SignalPrefix { get; set; } = "";

    /// <summary>Column names of the outbox table.</summary>
    public OutboxColumns Columns { get; set; } = new();

    /// <summary>How rows are read: from a logical replication slot (the default) or by polling the table.</summary>
    public RelayMode Mode { get; set; } = RelayMode.Replication;

    /// <summary>The polling relay's pace (<see cref="RelayMode.Polling"/> only).</summary>
    public PollingOptions Polling { get; set; } = new();

    /// <summary>The configured table, or null in table-less mode.</summary>
    public TableName? OutboxTable =>
        string.IsNullOrWhiteSpace(Table) ? null
        : TableName.TryParse(Table, out var table, out var error) ? table : throw new CdcConfigurationException("Cdc:Postgres:Table", error);
}

/// <summary>
/// The server removed WAL the slot still needed (<c>wal_status = 'lost'</c>): events between the slot's last confirmed
/// position and now can no longer be read from it.
/// </summary>
public enum LostSlotPolicy
{
    /// <summary>Stop the worker with a message giving the last confirmed position; an operator decides.</summary>
    Stop,
    /// <summary>Create the slot again, log and count the gap with its bounds, and go on.</summary>
    Recreate,
    /// <summary>Create the slot again and relay the gap's rows from the table (still there), then stream.</summary>
    Backfill,
}

/// <summary>Whether rows already in the table when the connector creates its slot are relayed.</summary>
public enum SnapshotMode
{
    Never,
    /// <summary>Read in the snapshot the slot's creation exports: no row at the boundary is missed or doubled.</summary>
    Initial,
}

/// <summary>How the connector reads the outbox (<c>Cdc:Postgres:Mode</c>).</summary>
public enum RelayMode
{
    /// <summary>A logical replication slot (pgoutput): needs <c>wal_level = logical</c> and a role with REPLICATION.</summary>
    Replication,
    /// <summary>
    /// The table is polled: batches are selected <c>FOR UPDATE SKIP LOCKED</c>, published, and deleted once Kafka has
    /// acknowledged them. For servers where logical replication cannot be enabled.
    /// </summary>
    Polling,
}

/// <summary>The polling relay's pace (<c>Cdc:Postgres:Polling:*</c>).</summary>
public sealed class PollingOptions
{
    /// <summary>How long to wait before polling again when a poll found no row.</summary>
    public TimeSpan Interval { get; set; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Rows per batch: selected, published, acknowledged and deleted in one database transaction.</summary>
    public int BatchSize { get; set; } = 1000;
}

public sealed class KafkaOptions
{
    public string BootstrapServers { get; set; } = "";

    /// <summary>Topic of each event; <c>{aggregate_type}</c> is replaced by the row's value.</summary>
    public string TopicTemplate { get; set; } = "outbox.event.{aggregate_type}";

    /// <summary>Where rows that cannot be published go, with an <c>error</c> header.</summary>
    public string DeadLetterTopic { get; set; } = "outbox.dlq";

    /// <summary>
    /// Compacted topic (one partition) where the connector keeps its last confirmed position per server, database and
    /// slot, so that a slot that disappears is known to be lost, not a first start.
    /// </summary>
    public string CheckpointTopic { get; set; } = "cdc.checkpoints";

    /// <summary>librdkafka producer properties, passed as is after the connector's defaults.</summary>
    public Dictionary<string, string> Producer { get; set; } = new(StringComparer.Ordinal);

    /// <summary>How topics that do not exist are created, when the cluster does not create them itself.</summary>
    public TopicOptions Topics { get; set; } = new();

    /// <summary>Confluent Schema Registry: values framed in its wire format when <see cref="SchemaRegistryOptions.Url"/> is set.</summary>
    public SchemaRegistryOptions SchemaRegistry { get; set; } = new();

    /// <summary>What a record's value is: the <c>OutboxEvent</c> (default), or the payload itself (Debezium-compatible).</summary>
    public ValueFormat ValueFormat { get; set; } = ValueFormat.OutboxEvent;

    /// <summary>
    /// Debezium's <c>table.fields.additional.placement</c>: <c>column:header[:alias]</c> or <c>column:partition</c>,
    /// comma-separated; any column of the table. Parsed by <see cref="Mapping.AdditionalPlacement.Parse"/>.
    /// </summary>
    public string AdditionalPlacement { get; set; } = "";

    /// <summary><c>ExactlyOnce</c>: each source transaction's events (and the checkpoint) in one Kafka transaction.</summary>
    public DeliveryMode Delivery { get; set; } = DeliveryMode.AtLeastOnce;
}

/// <summary>How events reach Kafka.</summary>
public enum DeliveryMode
{
    /// <summary>An idempotent producer; duplicates can follow a crash, consumers deduplicate on the id header.</summary>
    AtLeastOnce,
    /// <summary>
    /// A transactional producer: each source transaction's events in one Kafka transaction with the checkpoint; after a
    /// crash, source transactions already committed to Kafka are skipped. Consumers read with read_committed.
    /// </summary>
    ExactlyOnce,
}

/// <summary>
/// A topic the connector writes to that does not exist, and that the cluster does not create on its own, is created
/// through the Admin API with these (the cluster's defaults for what is unset).
/// </summary>
public sealed class TopicOptions
{
    public int? Partitions { get; set; }
    public short? ReplicationFactor { get; set; }
    /// <summary>Topic-level settings, e.g. <c>retention.ms</c>, <c>min.insync.replicas</c>.</summary>
    public Dictionary<string, string> Config { get; set; } = new(StringComparer.Ordinal);
}

/// <summary>How the relay paces itself. Not in the public contract's table; defaults suit most users.</summary>
public sealed class RelayOptions
{
    /// <summary>
    /// Events produced but not yet acknowledged; reading the slot pauses at this bound. 5,000 covers a drain at the
    /// server's decode rate (about 150,000 events/s) with 30 ms from produce to acknowledgement; each event in flight holds
    /// its record twice (managed and in librdkafka), so the bound sets the memory under backpressure (tests/Cdc.Benchmarks).
    /// </summary>
    public int MaxInFlightEvents { get; set; } = 5_000;

    /// <summary>Bytes (record values) produced but not yet acknowledged; reading pauses at this bound.</summary>
    public long MaxInFlightBytes { get; set; } = 64L * 1024 * 1024;

    /// <summary>How often the acknowledged position is sent to the server.</summary>
    public TimeSpan ConfirmInterval { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>How long a stop waits for in-flight events to be acknowledged before confirming and exiting.</summary>
    public TimeSpan ShutdownTimeout { get; set; } = TimeSpan.FromSeconds(25);

    /// <summary>Upper bound of the backoff between reconnects.</summary>
    public TimeSpan MaxRetryBackoff { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Exactly-once delivery: consecutive source transactions share one Kafka transaction until it holds this many events
    /// (a source transaction is never split, so one larger than this is a Kafka transaction of its own).
    /// </summary>
    public int TransactionMaxEvents { get; set; } = 5_000;

    /// <summary>Exactly-once delivery: a Kafka transaction is committed once it is this old and no source transaction is half-read.</summary>
    public TimeSpan TransactionLinger { get; set; } = TimeSpan.FromMilliseconds(100);
}
