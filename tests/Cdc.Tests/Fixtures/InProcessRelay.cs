using Cdc.Configuration;
using Cdc.Relay;
using Cdc.Telemetry;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;
using Xunit.Abstractions;

namespace Cdc.Tests.Fixtures;

/// <summary>
/// The connector in-process on an outbox table the test made itself (unlike <see cref="OutboxHarness"/>, which makes its
/// own): start it, wait for commits to be confirmed, stop it; disposing drops its slot and publication.
/// </summary>
public sealed class InProcessRelay : IAsyncDisposable
{
    readonly ITestOutputHelper _output;
    readonly ILoggerFactory _loggers;

    /// <summary>What the relay logged (Information and up), for tests that check what it says and how often.</summary>
    public System.Collections.Concurrent.ConcurrentQueue<string> Logs { get; } = new();
    readonly CancellationTokenSource _stop = new();
    Task? _run;

    InProcessRelay(CdcOptions options, ITestOutputHelper output)
    {
        Options = options;
        _output = output;
        _loggers = LoggerFactory.Create(b => b.AddProvider(new TestLoggerProvider(output, Logs)).SetMinimumLevel(LogLevel.Information));
    }

    public CdcOptions Options { get; }
    public RelayStatus Status { get; } = new();

    /// <summary>Options for a relay of <paramref name="table"/> with its own slot, publication and topics named after <paramref name="name"/>.</summary>
    public static CdcOptions OptionsFor(TestServers servers, string name, string table, Action<CdcOptions>? configure = null)
    {
        var options = new CdcOptions
        {
            Postgres = new PostgresOptions
            {
                ConnectionString = servers.PostgresConnectionString,
                Table = table,
                Slot = $"{name}_slot",
                Publication = $"{name}_pub",
            },
            Kafka = new KafkaOptions
            {
                BootstrapServers = servers.KafkaBootstrapServers,
                TopicTemplate = $"{name}.{{aggregate_type}}",
                DeadLetterTopic = $"{name}.dlq",
            },
            Relay = new RelayOptions { ConfirmInterval = TimeSpan.FromMilliseconds(100) },
        };
        configure?.Invoke(options);
        CdcOptionsLoader.Validate(options);
        return options;
    }

    /// <summary>Starts the relay and waits until it streams: commits from then on are captured.</summary>
    public static async Task<InProcessRelay> StartAsync(CdcOptions options, ITestOutputHelper output)
    {
        var relay = new InProcessRelay(options, output);
        var run = new OutboxRelay(options, relay._loggers.CreateLogger<OutboxRelay>(), new CdcMetrics(relay.Status), relay.Status);
        relay._run = Task.Run(() => run.RunAsync(relay._stop.Token));
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (!relay.Status.Streaming)
        {
            relay.AssertRunning();
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"The relay of {options.Postgres.Table} did not start streaming");
            await Task.Delay(50);
        }
        return relay;
    }

    public void AssertRunning()
    {
        if (_run is { IsCompleted: true })
            throw new Xunit.Sdk.XunitException($"The relay stopped: {_run.Exception?.GetBaseException().Message ?? "without error"}");
    }

    /// <summary>The server's WAL insert position: past every commit made so far.</summary>
    public static async Task<ulong> CurrentWalLsnAsync(string connectionString)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT pg_current_wal_insert_lsn()", connection);
        return (ulong)(NpgsqlLogSequenceNumber)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>Waits until the slot is confirmed past <paramref name="lsn"/>: every event committed before it is acknowledged by Kafka.</summary>
    public async Task WaitForConfirmedAsync(ulong lsn, TimeSpan timeout)
    {
        await using var connection = new NpgsqlConnection(Options.Postgres.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1", connection);
        command.Parameters.AddWithValue(Options.Postgres.Slot);
        var deadline = DateTime.UtcNow + timeout;
        while (await command.ExecuteScalarAsync() is not NpgsqlLogSequenceNumber confirmed || (ulong)confirmed < lsn)
        {
            AssertRunning();
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"Slot {Options.Postgres.Slot} not confirmed past {new NpgsqlLogSequenceNumber(lsn)} within {timeout}");
            await Task.Delay(100);
        }
    }

    /// <summary>Waits until everything committed so far is acknowledged.</summary>
    public async Task WaitForCaughtUpAsync(TimeSpan timeout) =>
        await WaitForConfirmedAsync(await CurrentWalLsnAsync(Options.Postgres.ConnectionString), timeout);

    public string Topic(string aggregateType) => Options.Kafka.TopicTemplate.Replace("{aggregate_type}", aggregateType);

    /// <summary>Stops as SIGTERM would: in-flight events are acknowledged, then the slot is confirmed.</summary>
    public async Task StopAsync()
    {
        if (_run is null)
            return;
        await _stop.CancelAsync();
        await _run.WaitAsync(TimeSpan.FromSeconds(40));
        _run = null;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await StopAsync();
        }
        catch (Exception e)
        {
            _output.WriteLine($"relay did not stop cleanly: {e.Message}");
        }
        await DropSlotAndPublicationAsync(Options);
        _loggers.Dispose();
    }

    /// <summary>Drops a relay's slot (when no one reads it) and publication; tests leave no slot holding WAL behind.</summary>
    public static async Task DropSlotAndPublicationAsync(CdcOptions options)
    {
        try
        {
            await using var connection = new NpgsqlConnection(options.Postgres.ConnectionString);
            await connection.OpenAsync();
            // A reader that was just stopped or killed may hold the slot for a moment longer.
            for (var deadline = DateTime.UtcNow.AddSeconds(10); DateTime.UtcNow < deadline; await Task.Delay(200))
            {
                await using var find = new NpgsqlCommand("SELECT active FROM pg_replication_slots WHERE slot_name = $1", connection);
                find.Parameters.AddWithValue(options.Postgres.Slot);
                var active = await find.ExecuteScalarAsync();
                if (active is null)
                    break;
                if (active is false)
                {
                    await using var drop = new NpgsqlCommand("SELECT pg_drop_replication_slot($1)", connection);
                    drop.Parameters.AddWithValue(options.Postgres.Slot);
                    await drop.ExecuteNonQueryAsync();
                    break;
                }
            }
            await using var command = new NpgsqlCommand($"DROP PUBLICATION IF EXISTS \"{options.Postgres.Publication}\"", connection);
            await command.ExecuteNonQueryAsync();
        }
        catch (NpgsqlException)
        {
            // Best effort: the test server is thrown away at the end of the run.
        }
    }
}

/// <summary>Unique lower-case names for a test's tables, slots and topics on the shared servers.</summary>
public static class TestNames
{
    static int _counter;

    public static string Unique(string prefix) => $"{prefix}{Interlocked.Increment(ref _counter)}_{Guid.NewGuid():N}"[..Math.Min(prefix.Length + 12, 40)];
}

/// <summary>One-line SQL against the shared PostgreSQL.</summary>
public static class Sql
{
    public static async Task ExecuteAsync(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    public static async Task<T> ScalarAsync<T>(string connectionString, string sql, params object[] parameters)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        foreach (var parameter in parameters)
            command.Parameters.AddWithValue(parameter);
        return (T)(await command.ExecuteScalarAsync())!;
    }
}
