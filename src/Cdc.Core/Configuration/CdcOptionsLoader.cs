using System.Text.RegularExpressions;
using Microsoft.Extensions.Configuration;
using Npgsql;

namespace Cdc.Configuration;

/// <summary>Binds and validates <see cref="CdcOptions"/>; every problem is reported with the key that causes it.</summary>
public static partial class CdcOptionsLoader
{
    public static CdcOptions Load(IConfiguration configuration)
    {
        var options = new CdcOptions();
        try
        {
            configuration.GetSection(CdcOptions.Section).Bind(options);
        }
        catch (InvalidOperationException e)
        {
            // The binder's message names the path ("Failed to convert configuration value at 'Cdc:Relay:X' ...").
            var key = KeyInBinderMessage().Match(e.Message) is { Success: true } m ? m.Groups[1].Value : CdcOptions.Section;
            throw new CdcConfigurationException(key, e.InnerException?.Message ?? e.Message, e);
        }
        BindSchemaRegistryProperties(configuration, options.Kafka.SchemaRegistry);
        Validate(options);
        return options;
    }

    public static void Validate(CdcOptions options)
    {
        var pg = options.Postgres;
        Require("Cdc:Postgres:ConnectionString", pg.ConnectionString);
        try
        {
            var builder = new NpgsqlConnectionStringBuilder(pg.ConnectionString);
            if (string.IsNullOrWhiteSpace(builder.Host))
                throw new CdcConfigurationException("Cdc:Postgres:ConnectionString", "has no Host");
        }
        catch (Exception e) when (e is ArgumentException or FormatException or KeyNotFoundException)
        {
            // The message of Npgsql's parser does not echo the password; ours must not either.
            throw new CdcConfigurationException("Cdc:Postgres:ConnectionString", $"is not a valid Npgsql connection string ({e.Message})");
        }

        if (pg.OutboxTable is null && string.IsNullOrEmpty(pg.MessagePrefix))
            throw new CdcConfigurationException("Cdc:Postgres:Table", "is empty and so is Cdc:Postgres:MessagePrefix: there is nothing to relay");
        RequireIdentifier("Cdc:Postgres:Slot", pg.Slot, SlotName());
        RequireIdentifier("Cdc:Postgres:Publication", pg.Publication, Identifier());

        if (pg.BackfillMargin < TimeSpan.Zero)
            throw new CdcConfigurationException("Cdc:Postgres:BackfillMargin", "must not be negative");
        if (pg.SignalPrefix.Length > 0 && pg.SignalPrefix == pg.MessagePrefix)
            throw new CdcConfigurationException("Cdc:Postgres:SignalPrefix", "must differ from Cdc:Postgres:MessagePrefix (signals are not events)");
        if ((pg.Snapshot == SnapshotMode.Initial || pg.LostSlotPolicy == LostSlotPolicy.Backfill || pg.SignalPrefix.Length > 0) && pg.OutboxTable is null)
            throw new CdcConfigurationException("Cdc:Postgres:Table",
                "is empty, but Snapshot, LostSlotPolicy=Backfill and SignalPrefix read rows from the table");
        if (pg.Retention is { } retention && retention <= TimeSpan.Zero)
            throw new CdcConfigurationException("Cdc:Postgres:Retention", "must be positive (or unset to keep every row)");

        foreach (var (name, value) in pg.Columns.Named())
            if (name != nameof(OutboxColumns.Headers)) // empty: the table has no headers column
                Require($"Cdc:Postgres:Columns:{name}", value);

        if (pg.Mode == RelayMode.Polling)
        {
            ValidatePolling(pg);
            // What only a replication slot can do.
            if (pg.Snapshot != SnapshotMode.Never)
                throw new CdcConfigurationException("Cdc:Postgres:Snapshot", "is for Mode=Replication (polling relays every row in the table anyway)");
            if (pg.LostSlotPolicy == LostSlotPolicy.Backfill)
                throw new CdcConfigurationException("Cdc:Postgres:LostSlotPolicy", "Backfill is for Mode=Replication (polling has no slot)");
            if (pg.SignalPrefix.Length > 0)
                throw new CdcConfigurationException("Cdc:Postgres:SignalPrefix", "is for Mode=Replication (signals travel in the slot)");
            if (options.Kafka.Delivery == DeliveryMode.ExactlyOnce)
                throw new CdcConfigurationException("Cdc:Kafka:Delivery", "ExactlyOnce is for Mode=Replication (it skips source transactions by their position in the slot)");
        }

        var kafka = options.Kafka;
        Require("Cdc:Kafka:BootstrapServers", kafka.BootstrapServers);
        Require("Cdc:Kafka:TopicTemplate", kafka.TopicTemplate);
        if (!TopicName.IsValid(kafka.TopicTemplate.Replace(Mapping.TopicRouter.Placeholder, "x")))
            throw new CdcConfigurationException("Cdc:Kafka:TopicTemplate",
                $"'{kafka.TopicTemplate}' does not make a valid Kafka topic name (letters, digits, '.', '_', '-'; at most 249)");
        if (!TopicName.IsValid(kafka.CheckpointTopic))
            throw new CdcConfigurationException("Cdc:Kafka:CheckpointTopic", $"'{kafka.CheckpointTopic}' is not a valid Kafka topic name");
        if (!TopicName.IsValid(kafka.DeadLetterTopic))
            throw new CdcConfigurationException("Cdc:Kafka:DeadLetterTopic", $"'{kafka.DeadLetterTopic}' is not a valid Kafka topic name");
        foreach (var (key, value) in kafka.Producer)
            if (key.Length == 0 || value is null)
                throw new CdcConfigurationException($"Cdc:Kafka:Producer:{key}", "needs a value");

        if (kafka.Topics.Partitions is < 1)
            throw new CdcConfigurationException("Cdc:Kafka:Topics:Partitions", "must be at least 1 (or unset for the cluster's default)");
        if (kafka.Topics.ReplicationFactor is < 1)
            throw new CdcConfigurationException("Cdc:Kafka:Topics:ReplicationFactor", "must be at least 1 (or unset for the cluster's default)");
        foreach (var (key, value) in kafka.Topics.Config)
            if (key.Length == 0 || value is null)
                throw new CdcConfigurationException($"Cdc:Kafka:Topics:Config:{key}", "needs a value");

        if (kafka.Delivery == DeliveryMode.ExactlyOnce)
        {
            if (kafka.Producer.TryGetValue("enable.idempotence", out var idempotence) && idempotence.Equals("false", StringComparison.OrdinalIgnoreCase))
                throw new CdcConfigurationException("Cdc:Kafka:Producer:enable.idempotence", "cannot be false with Cdc:Kafka:Delivery=ExactlyOnce");
            if (kafka.Producer.ContainsKey("transactional.id"))
                throw new CdcConfigurationException("Cdc:Kafka:Producer:transactional.id",
                    "is derived from the server, database and slot with Cdc:Kafka:Delivery=ExactlyOnce (so a second replica fences a zombie); do not set it");
        }
        ValidateRecordFormat(options);

        var relay = options.Relay;
        if (relay.MaxInFlightEvents < 1)
            throw new CdcConfigurationException("Cdc:Relay:MaxInFlightEvents", "must be at least 1");
        if (relay.MaxInFlightBytes < 1024)
            throw new CdcConfigurationException("Cdc:Relay:MaxInFlightBytes", "must be at least 1024");
        if (relay.ConfirmInterval <= TimeSpan.Zero)
            throw new CdcConfigurationException("Cdc:Relay:ConfirmInterval", "must be positive");
        if (relay.ShutdownTimeout <= TimeSpan.Zero)
            throw new CdcConfigurationException("Cdc:Relay:ShutdownTimeout", "must be positive");
        if (relay.MaxRetryBackoff <= TimeSpan.Zero)
            throw new CdcConfigurationException("Cdc:Relay:MaxRetryBackoff", "must be positive");
        if (relay.TransactionMaxEvents < 1)
            throw new CdcConfigurationException("Cdc:Relay:TransactionMaxEvents", "must be at least 1");
        if (relay.TransactionLinger <= TimeSpan.Zero)
            throw new CdcConfigurationException("Cdc:Relay:TransactionLinger", "must be positive");

        // Every event in flight is one record in librdkafka's queue: a queue smaller than the bound would refuse records
        // (QUEUE_FULL) that only its own deliveries can make room for.
        // librdkafka's defaults: 100,000 messages, 1 GiB.
        var messages = kafka.Producer.TryGetValue("queue.buffering.max.messages", out var m) && long.TryParse(m, out var mv) ? mv : 100_000;
        var kbytes = kafka.Producer.TryGetValue("queue.buffering.max.kbytes", out var k) && long.TryParse(k, out var kv) ? kv : 1_048_576;
        if (relay.MaxInFlightEvents > messages)
            throw new CdcConfigurationException("Cdc:Relay:MaxInFlightEvents",
                $"is {relay.MaxInFlightEvents}, more than Cdc:Kafka:Producer:queue.buffering.max.messages ({messages}): the producer's queue " +
                "must hold every event in flight; lower one or raise the other");
        if (relay.MaxInFlightBytes > kbytes * 1024 / 2)
            throw new CdcConfigurationException("Cdc:Relay:MaxInFlightBytes",
                $"is {relay.MaxInFlightBytes} bytes, more than half of Cdc:Kafka:Producer:queue.buffering.max.kbytes ({kbytes} KiB): the producer's " +
                "queue must hold every event in flight with its headers and overhead; lower one or raise the other");
    }

    static void ValidatePolling(PostgresOptions pg)
    {
        if (pg.Polling.Interval <= TimeSpan.Zero)
            throw new CdcConfigurationException("Cdc:Postgres:Polling:Interval", "must be positive");
        if (pg.Polling.BatchSize < 1)
            throw new CdcConfigurationException("Cdc:Postgres:Polling:BatchSize", "must be at least 1");
        // What only the WAL carries cannot be polled, and the polling relay deletes what it relayed itself.
        if (pg.OutboxTable is null)
            throw new CdcConfigurationException("Cdc:Postgres:Table", "is empty, but Cdc:Postgres:Mode=Polling polls a table: name it");
        if (pg.MessagePrefix.Length > 0)
            throw new CdcConfigurationException("Cdc:Postgres:MessagePrefix",
                "is set, but pg_logical_emit_message events exist only in the WAL, which Cdc:Postgres:Mode=Polling does not read: " +
                "unset it, or use Mode=Replication");
        if (pg.Retention is not null)
            throw new CdcConfigurationException("Cdc:Postgres:Retention",
                "is set, but Cdc:Postgres:Mode=Polling deletes every row once Kafka acknowledged it: unset it");
    }

    static void Require(string key, string? value)
    {
        if (string.IsNullOrWhiteSpace(value))
            throw new CdcConfigurationException(key, "is required");
    }

    static void RequireIdentifier(string key, string value, Regex pattern)
    {
        Require(key, value);
        if (!pattern.IsMatch(value))
            throw new CdcConfigurationException(key, $"'{value}' must be a lower-case PostgreSQL identifier (a-z, 0-9, _; at most 63)");
    }

    // Slot names are restricted by the server to lower-case letters, digits and underscores.
    [GeneratedRegex("^[a-z0-9_]{1,63}$")]
    private static partial Regex SlotName();

    [GeneratedRegex("^[a-z_][a-z0-9_$]{0,62}$")]
    private static partial Regex Identifier();

    [GeneratedRegex("at '([^']+)'")]
    private static partial Regex KeyInBinderMessage();
}
