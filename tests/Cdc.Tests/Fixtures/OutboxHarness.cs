using Cdc.Configuration;
using Cdc.Relay;
using Cdc.Telemetry;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;
using Xunit.Abstractions;

namespace Cdc.Tests.Fixtures;

/// <summary>An outbox event a test writes.</summary>
public sealed record TestEvent(string? AggregateType, string AggregateId, string EventType, string Payload = "{}", string? Headers = null)
{
    // Monotonic, like the writer library's: rows read back from the table come ordered by (created_at, id).
    public Guid Id { get; init; } = Cdc.Outbox.OutboxId.New();
}

/// <summary>
/// One test's own outbox: a table, publication, slot and topics with unique names on the shared servers, the relay
/// running in-process on them, and ways to write rows, read topics and watch the slot.
/// </summary>
public sealed class OutboxHarness : IAsyncDisposable
{
    static int _counter;

    readonly ITestOutputHelper _output;
    readonly ILoggerFactory _loggers;

    /// <summary>What the relay logged (Information and up), for tests that check what it says and how often.</summary>
    public System.Collections.Concurrent.ConcurrentQueue<string> Logs { get; } = new();
    CancellationTokenSource? _stop;
    Task? _relay;

    public string Name { get; }
    public string ConnectionString { get; }
    public string BootstrapServers { get; }
    public CdcOptions Options { get; }
    public RelayStatus Status { get; private set; } = new();
    public string DeadLetterTopic => Options.Kafka.DeadLetterTopic;

    OutboxHarness(string name, string connectionString, string bootstrapServers, CdcOptions options, ITestOutputHelper output)
    {
        Name = name;
        ConnectionString = connectionString;
        BootstrapServers = bootstrapServers;
        Options = options;
        _output = output;
        _loggers = LoggerFactory.Create(b => b.AddProvider(new TestLoggerProvider(output, Logs)).SetMinimumLevel(LogLevel.Information));
    }

    /// <summary>Creates the table and topics. <paramref name="payloadType"/> is jsonb or bytea.</summary>
    public static async Task<OutboxHarness> CreateAsync(
        TestServers servers, ITestOutputHelper output, string[] aggregateTypes,
        string payloadType = "jsonb", bool aggregateTypeNullable = false,
        string? bootstrapServers = null, Action<CdcOptions>? configure = null)
    {
        var name = $"t{Interlocked.Increment(ref _counter)}_{Guid.NewGuid():N}"[..12];
        var options = new CdcOptions
        {
            Postgres = new PostgresOptions
            {
                ConnectionString = servers.PostgresConnectionString,
                Table = $"public.{name}_outbox",
                Slot = $"{name}_slot",
                Publication = $"{name}_pub",
            },
            Kafka = new KafkaOptions
            {
                BootstrapServers = bootstrapServers ?? servers.KafkaBootstrapServers,
                TopicTemplate = $"{name}.{{aggregate_type}}",
                DeadLetterTopic = $"{name}.dlq",
            },
            Relay = new RelayOptions { ConfirmInterval = TimeSpan.FromMilliseconds(100) },
        };
        configure?.Invoke(options);
        CdcOptionsLoader.Validate(options);

        await using (var connection = new NpgsqlConnection(servers.PostgresConnectionString))
        {
            await connection.OpenAsync();
            await using var ddl = new NpgsqlCommand($"""
                CREATE TABLE public.{name}_outbox (
                  id             uuid        PRIMARY KEY,
                  aggregate_type text        {(aggregateTypeNullable ? "" : "NOT NULL")},
                  aggregate_id   text        NOT NULL,
                  event_type     text        NOT NULL,
                  payload        {payloadType} NOT NULL,
                  headers        jsonb,
                  created_at     timestamptz NOT NULL DEFAULT now()
                );
                CREATE TABLE public.{name}_business (id serial PRIMARY KEY, note text);
                """, connection);
            await ddl.ExecuteNonQueryAsync();
        }

        if (bootstrapServers is null)
        {
            foreach (var type in aggregateTypes)
                await servers.CreateTopicAsync(options.Kafka.TopicTemplate.Replace("{aggregate_type}", type), partitions: 3);
            await servers.CreateTopicAsync(options.Kafka.DeadLetterTopic, partitions: 1);
        }
        output.WriteLine($"harness {name}: table {options.Postgres.Table}, slot {options.Postgres.Slot}, topics {name}.*");
        return new OutboxHarness(name, servers.PostgresConnectionString, options.Kafka.BootstrapServers, options, output)
        {
            PayloadIsBytes = payloadType == "bytea",
        };
    }

    public string Topic(string aggregateType) => Options.Kafka.TopicTemplate.Replace("{aggregate_type}", aggregateType);

    /// <summary>Starts the relay and waits until it streams (the slot exists from then on: later commits are captured).</summary>
    public async Task StartRelayAsync()
    {
        StartRelay();
        await WaitUntilStreamingAsync(TimeSpan.FromSeconds(60));
    }

    public void StartRelay()
    {
        if (_relay is not null)
            throw new InvalidOperationException("The relay is already running");
        Status = new RelayStatus();
        _stop = new CancellationTokenSource();
        var relay = new OutboxRelay(Options, _loggers.CreateLogger<OutboxRelay>(), new CdcMetrics(Status), Status);
        _relay = Task.Run(() => relay.RunAsync(_stop.Token));
    }

    /// <summary>Stops the relay as SIGTERM would: in-flight events are acknowledged, then the slot is confirmed.</summary>
    public async Task StopRelayAsync()
    {
        if (_relay is null)
            return;
        await _stop!.CancelAsync();
        await _relay.WaitAsync(TimeSpan.FromSeconds(40));
        _relay = null;
    }

    /// <summary>The running relay, which completes only when stopped or when it stops on its own (a fatal error).</summary>
    public Task? RelayTask => _relay;

    /// <summary>Fails the test when the relay ended on its own (a fatal error).</summary>
    public void AssertRelayRunning()
    {
        if (_relay is { IsCompleted: true })
            throw new Xunit.Sdk.XunitException($"The relay stopped: {_relay.Exception?.GetBaseException().Message ?? "without error"}");
    }

    public async Task WaitUntilStreamingAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!Status.Streaming)
        {
            AssertRelayRunning();
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException("The relay did not start streaming");
            await Task.Delay(50);
        }
    }

    /// <summary>Writes the events in one transaction; returns the server's WAL insert position after the commit.</summary>
    public async Task<ulong> CommitAsync(params TestEvent[] events) => await WriteAsync(events, commit: true);

    public async Task<ulong> WriteAsync(IReadOnlyList<TestEvent> events, bool commit, string? extraSql = null)
    {
        await using var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await using (var batch = new NpgsqlBatch(connection, tx))
        {
            foreach (var e in events)
                batch.BatchCommands.Add(InsertCommand(e));
            if (extraSql is not null)
                batch.BatchCommands.Add(new NpgsqlBatchCommand(extraSql));
            if (batch.BatchCommands.Count > 0)
                await batch.ExecuteNonQueryAsync();
        }
        if (commit)
            await tx.CommitAsync();
        else
            await tx.RollbackAsync();
        return await CurrentWalLsnAsync();
    }

    NpgsqlBatchCommand InsertCommand(TestEvent e)
    {
        var command = new NpgsqlBatchCommand(
            $"INSERT INTO {Options.Postgres.Table} (id, aggregate_type, aggregate_id, event_type, payload, headers) VALUES ($1, $2, $3, $4, $5, $6::jsonb)");
        command.Parameters.Add(new NpgsqlParameter { Value = e.Id });
        command.Parameters.Add(new NpgsqlParameter { Value = (object?)e.AggregateType ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
        command.Parameters.Add(new NpgsqlParameter { Value = e.AggregateId });
        command.Parameters.Add(new NpgsqlParameter { Value = e.EventType });
        command.Parameters.Add(PayloadIsBytes
            ? new NpgsqlParameter { Value = Convert.FromBase64String(e.Payload), NpgsqlDbType = NpgsqlDbType.Bytea }
            : new NpgsqlParameter { Value = e.Payload, NpgsqlDbType = NpgsqlDbType.Jsonb });
        command.Parameters.Add(new NpgsqlParameter { Value = (object?)e.Headers ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
        return command;
    }

    /// <summary>For a bytea outbox, <see cref="TestEvent.Payload"/> carries the bytes in base64.</summary>
    public bool PayloadIsBytes { get; private init; }

    public async Task ExecuteAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    /// <summary>
    /// The server's WAL insert position: past the end of every commit made so far. (<c>pg_current_wal_lsn()</c> is the
    /// write position, which lags commits when synchronous_commit is off, as on the test server.)
    /// </summary>
    public async Task<ulong> CurrentWalLsnAsync()
    {
        await using var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT pg_current_wal_insert_lsn()", connection);
        return (ulong)(NpgsqlLogSequenceNumber)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>The slot's <c>confirmed_flush_lsn</c> as the server reports it (0 before the slot exists).</summary>
    public async Task<ulong> ConfirmedFlushLsnAsync()
    {
        await using var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1", connection);
        command.Parameters.AddWithValue(Options.Postgres.Slot);
        return await command.ExecuteScalarAsync() is NpgsqlLogSequenceNumber lsn ? (ulong)lsn : 0;
    }

    public async Task WaitForConfirmedAsync(ulong lsn, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        ulong confirmed;
        while ((confirmed = await ConfirmedFlushLsnAsync()) < lsn)
        {
            AssertRelayRunning();
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException(
                    $"Slot confirmed {new NpgsqlLogSequenceNumber(confirmed)}, still before {new NpgsqlLogSequenceNumber(lsn)} after {timeout}");
            await Task.Delay(100);
        }
    }

    /// <summary>Waits until the server has sent the slot's reader everything up to <paramref name="lsn"/>.</summary>
    public async Task WaitForSentAsync(ulong lsn, TimeSpan timeout)
    {
        await using var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("""
            SELECT r.sent_lsn FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid
            WHERE s.slot_name = $1
            """, connection);
        command.Parameters.AddWithValue(Options.Postgres.Slot);
        var deadline = DateTime.UtcNow + timeout;
        while (await command.ExecuteScalarAsync() is not NpgsqlLogSequenceNumber sent || (ulong)sent < lsn)
        {
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"The server did not send up to {new NpgsqlLogSequenceNumber(lsn)}");
            await Task.Delay(50);
        }
    }

    /// <summary>Every record on the topic, read up to the high watermarks (what Kafka has acknowledged).</summary>
    public List<ConsumeResult<byte[], byte[]>> ReadTopic(string topic) => KafkaReader.ReadAll(BootstrapServers, topic);

    public async ValueTask DisposeAsync()
    {
        try
        {
            await StopRelayAsync();
        }
        catch (Exception e)
        {
            _output.WriteLine($"relay did not stop cleanly: {e.Message}");
        }
        try
        {
            await ExecuteAsync($"""
                SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{Options.Postgres.Slot}' AND NOT active;
                DROP PUBLICATION IF EXISTS {Options.Postgres.Publication};
                DROP TABLE IF EXISTS {Options.Postgres.Table}, public.{Name}_business;
                """);
        }
        catch (Exception e)
        {
            _output.WriteLine($"cleanup: {e.Message}");
        }
        _loggers.Dispose();
    }
}
