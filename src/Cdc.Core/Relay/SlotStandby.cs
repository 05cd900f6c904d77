using Cdc.Configuration;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Cdc.Relay;

/// <summary>
/// A replica whose slot another reader holds: it watches <c>pg_replication_slots</c> on one connection, ten times a
/// second, and returns as soon as the slot is free (the leader stopped and released it, or the server saw its
/// connection go), so the relay opens a session and takes over at once. Cheap while it waits: one small query, no
/// replication connection, no producer.
/// </summary>
sealed class SlotStandby(PostgresOptions options, RelayStatus status, ILogger logger)
{
    static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(100);

    public async Task WaitUntilFreeAsync(CancellationToken ct)
    {
        try
        {
            await using var connection = new NpgsqlConnection(options.ConnectionString);
            await connection.OpenAsync(ct);
            await using var command = new NpgsqlCommand("SELECT active FROM pg_replication_slots WHERE slot_name = $1", connection);
            command.Parameters.AddWithValue(options.Slot);
            await command.PrepareAsync(ct);
            while (!ct.IsCancellationRequested)
            {
                status.DatabaseReachable = true;
                if (await command.ExecuteScalarAsync(ct) is not true)
                    return; // free, or gone (the next session decides what a missing slot means)
                await Task.Delay(Poll, ct);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
        catch (NpgsqlException e)
        {
            // The database went away while standing by: not Ready; the next session attempt waits for it with backoff.
            status.DatabaseReachable = false;
            logger.LogDebug("Standing by: could not watch the slot ({Message})", e.Message);
            await Task.Delay(TimeSpan.FromSeconds(1), ct).ContinueWith(_ => { }, TaskScheduler.Default);
        }
    }
}
