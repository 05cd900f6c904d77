using Cdc.Configuration;
using Cdc.Relay;
using Cdc.Replication;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;

namespace Cdc.Telemetry;

/// <summary>
/// Looks at the server every few seconds while streaming: its WAL position and the slot's health for the lag and slot
/// metrics, and whether the outbox table the stream started with still exists. A dropped outbox table cannot be
/// followed (a table created in its place is not in the publication, so its rows would never arrive): that ends the
/// stream with <see cref="TableDropped"/>.
/// </summary>
sealed class SlotHealthMonitor(PostgresOptions options, OutboxTable? table, RelayStatus status, ILogger logger)
{
    static readonly TimeSpan Interval = TimeSpan.FromSeconds(5);

    readonly TaskCompletionSource<Exception> _problem = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes with a problem that no retry fixes, found while streaming.</summary>
    public Task<Exception> Problem => _problem.Task;

    public async Task RunAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await LookAsync(ct);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                logger.LogDebug(e, "Could not read the slot's health");
            }
            await Task.Delay(Interval, ct);
        }
    }

    async Task LookAsync(CancellationToken ct)
    {
        await using var connection = new NpgsqlConnection(options.ConnectionString);
        await connection.OpenAsync(ct);
        await using var command = new NpgsqlCommand(
            """
            SELECT pg_current_wal_lsn(), s.wal_status, s.safe_wal_size,
                   pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint,
                   $2::oid = 0 OR EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = $2),
                   to_regclass($3::text)::oid
            FROM (SELECT 1) AS one
            LEFT JOIN pg_replication_slots s ON s.slot_name = $1
            """, connection);
        command.Parameters.AddWithValue(options.Slot);
        command.Parameters.AddWithValue(NpgsqlDbType.Oid, table?.Oid ?? 0u);
        command.Parameters.AddWithValue(NpgsqlDbType.Text, (object?)table?.Name.Quoted ?? DBNull.Value);
        await using var reader = await command.ExecuteReaderAsync(ct);
        await reader.ReadAsync(ct);
        status.DatabaseReachable = true;
        status.ServerWalLsn = (ulong)reader.GetFieldValue<NpgsqlLogSequenceNumber>(0);
        status.Slot = reader.IsDBNull(1)
            ? null
            : new SlotHealth(reader.GetString(1), reader.IsDBNull(2) ? null : reader.GetInt64(2), reader.IsDBNull(3) ? 0 : reader.GetInt64(3));
        if (!reader.GetBoolean(4))
            _problem.TrySetResult(TableDropped(table!));
        else if (table is not null && !reader.IsDBNull(5) && reader.GetFieldValue<uint>(5) != table.Oid)
            // Another table has the outbox's name (the outbox was renamed away and a new one created): its rows may never
            // reach this stream (a publication FOR TABLE does not cover it), so nobody would notice them missing.
            _problem.TrySetResult(new CdcStartupException(
                $"The name {table.Name} now belongs to another table (relation {reader.GetFieldValue<uint>(5)}) than the outbox the " +
                $"stream started with (relation {table.Oid}): the outbox was rotated. Its rows are not relayed until the worker starts " +
                "again on it (add it to the publication if needed); the slot is confirmed only up to what Kafka acknowledged."));
        else if (status.Slot?.WalStatus == "lost")
            // The server removed WAL the slot needs: this stream cannot go on. The next start applies LostSlotPolicy.
            _problem.TrySetResult(new InvalidOperationException($"Slot {options.Slot} was invalidated while streaming (wal_status = 'lost')"));
    }

    static CdcStartupException TableDropped(OutboxTable table) => new(
        $"The outbox table {table.Name} (relation {table.Oid}) was dropped while streaming. A table created in its place is " +
        "not in the publication, so its rows would never be relayed: add it to the publication (ALTER PUBLICATION ... ADD " +
        "TABLE) and start the worker again. The slot is confirmed only up to what Kafka acknowledged.");
}
