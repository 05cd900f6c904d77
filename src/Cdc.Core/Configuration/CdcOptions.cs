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

    /// <summary>What to do when the slot was invalidated because it fell behind <c>max_slot_wal_keep_size</c>.</summary>
    public LostSlotPolicy LostSlotPolicy { get; set; } = LostSlotPolicy.Stop;

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
    /// <summary>Stop the worker with a message; an operator decides (the default: nothing is skipped silently).</summary>
    Stop,
    /// <summary>Drop and recreate the slot, log the gap (from and to LSN) for a backfill, and go on.</summary>
    Recreate,
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

    /// <summary>librdkafka producer properties, passed as is after the connector's defaults.</summary>
    public Dictionary<string, string> Producer { get; set; } = new(StringComparer.Ordinal);

    /// <summary>How topics that do not exist are created, when the cluster does not create them itself.</summary>
    public TopicOptions Topics { get; set; } = new();
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
    /// <summary>Events produced but not yet acknowledged; reading the slot pauses at this bound.</summary>
    public int MaxInFlightEvents { get; set; } = 10_000;

    /// <summary>Bytes (record values) produced but not yet acknowledged; reading pauses at this bound.</summary>
    public long MaxInFlightBytes { get; set; } = 64L * 1024 * 1024;

    /// <summary>How often the acknowledged position is sent to the server.</summary>
    public TimeSpan ConfirmInterval { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>How long a stop waits for in-flight events to be acknowledged before confirming and exiting.</summary>
    public TimeSpan ShutdownTimeout { get; set; } = TimeSpan.FromSeconds(25);

    /// <summary>Upper bound of the backoff between reconnects.</summary>
    public TimeSpan MaxRetryBackoff { get; set; } = TimeSpan.FromSeconds(30);
}
