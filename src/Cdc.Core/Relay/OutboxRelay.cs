using System.Collections.Concurrent;
using Cdc.Configuration;
using Cdc.Polling;
using Cdc.Publishing;
using Cdc.Replication;
using Cdc.Telemetry;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Cdc.Relay;

/// <summary>
/// Runs relay sessions until stopped: after a failure it waits (backoff) and resumes from the slot, so nothing
/// unacknowledged is skipped. Problems no retry fixes (configuration, privileges, wal_level, authorization) end it
/// with an exception whose message says what to change.
/// </summary>
public sealed class OutboxRelay(CdcOptions options, ILogger<OutboxRelay> logger, CdcMetrics metrics, RelayStatus status)
{
    // Server errors a retry cannot fix.
    static readonly HashSet<string> FatalSqlStates =
    [
        PostgresErrorCodes.InvalidPassword, PostgresErrorCodes.InvalidAuthorizationSpecification,
        PostgresErrorCodes.InvalidCatalogName, PostgresErrorCodes.InsufficientPrivilege,
    ];

    static readonly TimeSpan InitialBackoff = TimeSpan.FromMilliseconds(500);

    public async Task RunAsync(CancellationToken stopping)
    {
        using var retentionStop = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        var retention = new OutboxRetention(options, status, metrics, logger).RunAsync(retentionStop.Token);
        try
        {
            await RelayAsync(stopping);
        }
        finally
        {
            await retentionStop.CancelAsync();
            try
            {
                await retention;
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    async Task RelayAsync(CancellationToken stopping)
    {
        var backoff = InitialBackoff;
        string? lastProblem = null;
        var recoveryAnnounced = false;
        var memory = new RelayMemory();
        // Schema ids, like known topics, outlive sessions: each subject is asked about once per process.
        using var schemas = RegistryValueSchemas.For(options.Kafka, logger);
        while (!stopping.IsCancellationRequested)
        {
            TimeSpan delay;
            string problem;
            string? standby = null; // why this replica stands by
            IRelaySession? session = null;
            try
            {
                session = options.Postgres.Mode == RelayMode.Polling
                    ? await PollingSession.OpenAsync(options, logger, metrics, status, memory, stopping, schemas)
                    : await RelaySession.OpenAsync(options, logger, metrics, status, memory, stopping, schemas);
                await session.RunAsync(stopping, onStreaming: () =>
                {
                    // Once per episode: a fault that recurs right after every start is not a new state each time.
                    if (lastProblem is not null && !recoveryAnnounced)
                        logger.LogInformation("Streaming again after {Problem}", lastProblem);
                    recoveryAnnounced = true;
                });
                return;
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.ObjectInUse)
            {
                // Another replica holds the slot (the server allows one reader): wait as a standby, below, once this
                // session's connections and producer are closed.
                problem = "slot busy";
                standby = e.MessageText;
                delay = TimeSpan.Zero;
            }
            catch (PostgresException e) when (FatalSqlStates.Contains(e.SqlState))
            {
                throw new CdcStartupException($"PostgreSQL refused: {e.MessageText} ({e.SqlState}). Check Cdc:Postgres:ConnectionString and the role's privileges.", e);
            }
            catch (Exception e) when (e is not CdcStartupException and not CdcConfigurationException)
            {
                // A session that got somewhere starts the backoff (and the log) over; one that fails right after every
                // start does neither.
                if (session?.MadeProgress == true)
                {
                    backoff = InitialBackoff;
                    lastProblem = null;
                }
                if (lastProblem is null)
                    recoveryAnnounced = false; // a new episode
                problem = Cause(e);
                delay = backoff;
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, options.Relay.MaxRetryBackoff.Ticks));
                metrics.Restarted(problem);
                status.Standby = false;
                if (session is null && Unreachable(e) is { } unreachable)
                {
                    // Not up yet, or down: waited for (not Ready meanwhile); a wrong address looks the same, so say which key.
                    var database = e is NpgsqlException;
                    if (database)
                        status.DatabaseReachable = false;
                    else
                        status.SetKafkaReachable(false);
                    problem = database ? "postgres unreachable" : "kafka unreachable";
                    if (lastProblem != problem)
                        logger.LogWarning("{Problem}. Waiting for it, retrying with backoff (now {Delay})", unreachable, delay);
                    lastProblem = problem;
                }
                else
                {
                    // Logged once per change of state, not per attempt.
                    if (lastProblem != problem)
                        logger.LogWarning("Stream interrupted ({Cause}): {Message}. Resuming from the {Source} with backoff (now {Delay})",
                            problem, Describe(e), options.Postgres.Mode == RelayMode.Polling ? "table" : "slot", delay);
                    else
                        logger.LogDebug("Still failing ({Cause}): {Message}; retry in {Delay}", problem, e.Message, delay);
                    lastProblem = problem;
                }
            }
            finally
            {
                if (session is not null)
                    await session.DisposeAsync();
            }
            if (standby is not null)
            {
                using var standing = new SlotStandby(options.Postgres, options.Kafka, status, logger);
                await standing.CheckKafkaAsync(); // whether Kafka answers before this replica says it is a Ready standby
                status.Standby = true;
                if (lastProblem != problem)
                    logger.LogInformation("Slot {Slot} is in use by another reader ({Message}); waiting to take over",
                        options.Postgres.Slot, standby);
                lastProblem = problem;
                await standing.WaitUntilFreeAsync(stopping);
                continue;
            }
            await Delay(delay, stopping);
        }
    }

    /// <summary>What to say when a server cannot be reached at all, or null for other failures.</summary>
    string? Unreachable(Exception e) => e switch
    {
        Confluent.Kafka.KafkaException => $"No Kafka broker answered at {options.Kafka.BootstrapServers} " +
                                          $"(Cdc:Kafka:BootstrapServers): {e.Message}",
        // Not a PostgresException (the server answered): the connection itself failed.
        NpgsqlException and not PostgresException =>
            $"PostgreSQL is unreachable at {PostgresAddress()} (Cdc:Postgres:ConnectionString): {Describe(e)}",
        _ => null,
    };

    string PostgresAddress()
    {
        var builder = new NpgsqlConnectionStringBuilder(options.Postgres.ConnectionString);
        return $"{builder.Host}:{builder.Port}";
    }

    /// <summary>The exception's message and its root cause's, which is often the useful part ("connection reset").</summary>
    static string Describe(Exception e) =>
        e.GetBaseException() is { } root && root != e ? $"{e.Message} ({root.GetType().Name}: {root.Message})" : e.Message;

    static string Cause(Exception e) => e switch
    {
        DeliveryFailedException => "kafka_delivery",
        Confluent.Kafka.KafkaException or Cdc.Positions.CheckpointWriteException => "kafka",
        NpgsqlException or System.Net.Sockets.SocketException or IOException or TimeoutException => "postgres",
        _ => "other",
    };

    static async Task Delay(TimeSpan delay, CancellationToken ct)
    {
        try
        {
            await Task.Delay(delay, ct);
        }
        catch (OperationCanceledException)
        {
        }
    }
}
