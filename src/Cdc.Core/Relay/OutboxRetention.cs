using Cdc.Configuration;
using Cdc.Telemetry;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Cdc.Relay;

/// <summary>
/// The optional retention job (<c>Cdc:Postgres:Retention</c>): deletes outbox rows older than the retention that were
/// created before the commit of the last transaction the slot confirmed, in batches. Deleting never unpublishes
/// anything (the INSERT is already in the WAL); the confirmed bound only keeps rows until they were relayed.
/// </summary>
public sealed class OutboxRetention(CdcOptions options, RelayStatus status, CdcMetrics metrics, ILogger logger)
{
    const int BatchSize = 10_000;
    static readonly TimeSpan Interval = TimeSpan.FromMinutes(1);

    public async Task RunAsync(CancellationToken ct)
    {
        if (options.Postgres.Retention is not { } retention || options.Postgres.OutboxTable is not { } table)
            return;
        var interval = retention < Interval ? retention : Interval;
        using var timer = new PeriodicTimer(interval);
        while (await timer.WaitForNextTickAsync(ct))
        {
            try
            {
                await DeleteOnceAsync(table, retention, ct);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                logger.LogWarning("Outbox retention could not delete old rows: {Message}", e.Message);
            }
        }
    }

    /// <summary>One pass; returns the rows deleted.</summary>
    public async Task<long> DeleteOnceAsync(TableName table, TimeSpan retention, CancellationToken ct)
    {
        if (status.ConfirmedCommitTime is not { } confirmed)
            return 0;
        var cutoff = DateTime.UtcNow - retention < confirmed ? DateTime.UtcNow - retention : confirmed;
        // Rows of an open gap (a backfill or snapshot not finished) are still to be relayed.
        if (status.OpenGapFrom is { } gap && gap < cutoff)
            cutoff = gap;
        if (cutoff == DateTime.MinValue)
            return 0;
        var id = SqlIdentifier.Quote(options.Postgres.Columns.Id);
        var createdAt = SqlIdentifier.Quote(options.Postgres.Columns.CreatedAt);
        await using var connection = new NpgsqlConnection(options.Postgres.ConnectionString);
        await connection.OpenAsync(ct);
        long total = 0;
        while (true)
        {
            // By key, not ctid: on a partitioned table the same ctid exists in every partition. (id, created_at) is
            // unique either way: a partitioned table's key must include the partition column.
            await using var delete = new NpgsqlCommand(
                $"DELETE FROM {table.Quoted} WHERE ({id}, {createdAt}) IN " +
                $"(SELECT {id}, {createdAt} FROM {table.Quoted} WHERE {createdAt} < $1 LIMIT {BatchSize})",
                connection);
            delete.Parameters.AddWithValue(cutoff);
            var deleted = await delete.ExecuteNonQueryAsync(ct);
            total += deleted;
            metrics.RetentionDeleted(deleted);
            if (deleted < BatchSize)
                break;
        }
        if (total > 0)
            logger.LogInformation("Outbox retention deleted {Count} rows of {Table} created before {Cutoff:O}", total, table, cutoff);
        return total;
    }
}
