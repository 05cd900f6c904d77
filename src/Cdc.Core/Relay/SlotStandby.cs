using System.Diagnostics;
using Cdc.Configuration;
using Cdc.Publishing;
using Microsoft.Extensions.Logging;
using Confluent.Kafka;
using Npgsql;

namespace Cdc.Relay;

/// <summary>
/// A replica whose slot another reader holds: it watches <c>pg_replication_slots</c> and the slot's claim
/// (<see cref="SlotClaim"/>) on one connection, ten times a second, and returns as soon as the slot is free (the leader stopped and released it, or the server saw its
/// connection go), so the relay opens a session and takes over at once. Cheap while it waits: one small query, no
/// replication connection, no producer; every few seconds a metadata request tells whether Kafka answers (a healthy
/// standby is Ready, one that could not relay if it took over is not).
/// </summary>
sealed class SlotStandby(PostgresOptions options, KafkaOptions kafka, RelayStatus status, ILogger logger) : IDisposable
{
    static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(100);
    static readonly TimeSpan KafkaProbeInterval = TimeSpan.FromSeconds(2);
    readonly IAdminClient _admin = KafkaProbe.Client(kafka);

    /// <summary>Asks Kafka once (up to 2 s) and records the answer.</summary>
    public Task CheckKafkaAsync() => Task.Run(() => ProbeKafka(_admin));

    public async Task WaitUntilFreeAsync(CancellationToken ct)
    {
        var admin = _admin;
        Task? probe = null;
        var lastProbe = Stopwatch.GetTimestamp();
        try
        {
            await using var connection = new NpgsqlConnection(options.ConnectionString);
            await connection.OpenAsync(ct);
            // Busy while a reader streams the slot, or a replica claims it (reading the table before it streams).
            await using var command = new NpgsqlCommand(
                $"SELECT coalesce((SELECT active FROM pg_replication_slots WHERE slot_name = $1), false) OR {SlotClaim.HeldSql}", connection);
            command.Parameters.AddWithValue(options.Slot);
            await command.PrepareAsync(ct);
            while (!ct.IsCancellationRequested)
            {
                status.DatabaseReachable = true;
                if (probe is null or { IsCompleted: true } && Stopwatch.GetElapsedTime(lastProbe) >= KafkaProbeInterval)
                {
                    lastProbe = Stopwatch.GetTimestamp();
                    probe = Task.Run(() => ProbeKafka(admin), CancellationToken.None);
                }
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
        finally
        {
            if (probe is not null)
                await probe; // before the admin client is disposed
        }
    }

    public void Dispose() => _admin.Dispose();

    void ProbeKafka(IAdminClient admin)
    {
        var answers = KafkaProbe.Answers(admin, TimeSpan.FromSeconds(2));
        if (!status.SetKafkaReachable(answers))
            return;
        if (answers)
            logger.LogInformation("Kafka answers again (standing by)");
        else
            logger.LogWarning("No Kafka broker answers at {BootstrapServers} while standing by; not Ready", kafka.BootstrapServers);
    }
}
