using Cdc.Contracts;
using Npgsql;
using NpgsqlTypes;

namespace Cdc.Consumer;

/// <summary>
/// The idempotent inbox: which events one consumer has processed, recorded in the same transaction as the
/// processing itself, so an event redelivered after a crash is recognized and skipped.
/// </summary>
public sealed class Inbox
{
    public const string DefaultTable = "public.inbox";
    const int PurgeBatch = 10_000;

    readonly string _record;
    readonly string _purge;

    /// <param name="consumer">Who processes: one name per handler (usually the consumer group), so two services can share a table.</param>
    /// <param name="table"><c>schema.table</c> or <c>table</c> (in <c>public</c>).</param>
    public Inbox(string consumer, string table = DefaultTable)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(consumer);
        Consumer = consumer;
        var name = ParseTable(table);
        _record = $"INSERT INTO {name.Quoted} (consumer, event_id, processed_at) VALUES ($1, $2, now()) ON CONFLICT (consumer, event_id) DO NOTHING";
        // By key, not ctid: on a partitioned inbox the same ctid exists in every partition, and recent entries would go.
        // processed_at is in the key too: a partitioned table's primary key has to include its partition key.
        _purge = $"""
            DELETE FROM {name.Quoted} WHERE (consumer, event_id, processed_at) IN (
              SELECT consumer, event_id, processed_at FROM {name.Quoted}
              WHERE consumer = $1 AND processed_at < now() - $2 LIMIT {PurgeBatch})
            """;
    }

    public string Consumer { get; }

    /// <summary>The table name as the connector reads its options (<see cref="TableName"/>); an <see cref="ArgumentException"/> if it cannot be read.</summary>
    static TableName ParseTable(string? table) =>
        TableName.TryParse(table, out var name, out var error) ? name : throw new ArgumentException($"The inbox table {error}", nameof(table));

    /// <summary>DDL of the inbox table (and the index the retention cleanup uses). The schema must exist.</summary>
    public static string CreateTableSql(string table = DefaultTable)
    {
        var name = ParseTable(table);
        var index = SqlIdentifier.Quote($"{name.Name}_consumer_processed_at_idx");
        return $"""
            CREATE TABLE IF NOT EXISTS {name.Quoted} (
              consumer     text        NOT NULL,
              event_id     text        NOT NULL,
              processed_at timestamptz NOT NULL DEFAULT now(),
              PRIMARY KEY (consumer, event_id)
            );
            CREATE INDEX IF NOT EXISTS {index} ON {name.Quoted} (consumer, processed_at);
            """;
    }

    /// <summary>
    /// Records the event as processed in <paramref name="transaction"/>: true the first time, false when it already was.
    /// If another transaction is recording the same event right now, this waits for it: true if it rolls back, false if it commits.
    /// </summary>
    public async Task<bool> TryRecordAsync(NpgsqlTransaction transaction, string eventId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transaction);
        ArgumentException.ThrowIfNullOrEmpty(eventId);
        await using var command = new NpgsqlCommand(_record, transaction.Connection, transaction);
        command.Parameters.Add(new NpgsqlParameter { Value = Consumer, NpgsqlDbType = NpgsqlDbType.Text });
        command.Parameters.Add(new NpgsqlParameter { Value = eventId, NpgsqlDbType = NpgsqlDbType.Text });
        return await command.ExecuteNonQueryAsync(cancellationToken) == 1;
    }

    /// <summary>
    /// Deletes this consumer's entries older than <paramref name="retention"/>, in batches (short transactions, no long
    /// locks). Keep the retention longer than any redelivery can lag, i.e. than the topics' retention.
    /// </summary>
    public async Task<long> PurgeAsync(NpgsqlDataSource dataSource, TimeSpan retention, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(retention, TimeSpan.Zero);
        long total = 0;
        int deleted;
        do
        {
            await using var command = dataSource.CreateCommand(_purge);
            command.Parameters.Add(new NpgsqlParameter { Value = Consumer, NpgsqlDbType = NpgsqlDbType.Text });
            command.Parameters.Add(new NpgsqlParameter { Value = retention, NpgsqlDbType = NpgsqlDbType.Interval });
            deleted = await command.ExecuteNonQueryAsync(cancellationToken);
            total += deleted;
        } while (deleted == PurgeBatch);
        return total;
    }
}
