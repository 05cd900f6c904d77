using System.Collections.Concurrent;
using System.Diagnostics;
using Cdc.Configuration;
using Cdc.Mapping;
using Cdc.Outbox.V1;
using Cdc.Positions;
using Cdc.Publishing;
using Cdc.Relay;
using Cdc.Replication;
using Cdc.Table;
using Cdc.Telemetry;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;

namespace Cdc.Polling;

/// <summary>
/// The polling relay (<c>Cdc:Postgres:Mode=Polling</c>), one pass of it on one database connection and one producer.
/// Per batch, in one transaction: select the oldest rows (<c>ORDER BY created_at, id LIMIT BatchSize FOR UPDATE SKIP
/// LOCKED</c>), publish each through the same mapper and <see cref="EventPublisher"/> as the replication mode, wait until
/// every one is acknowledged (or dead-lettered), delete them, commit. Whatever fails before the commit rolls the batch
/// back: its rows stay and are relayed again (duplicates, never loss). Replicas polling at once skip each other's
/// locked rows.
/// </summary>
sealed class PollingSession : IRelaySession
{
    readonly CdcOptions _options;
    readonly ILogger _logger;
    readonly CdcMetrics _metrics;
    readonly RelayStatus _status;
    readonly NpgsqlConnection _connection;
    readonly OutboxTableReader _reader;
    readonly OutboxEventMapper _mapper;
    readonly PositionTracker _tracker;
    readonly EventPublisher _publisher;
    readonly KafkaRecordProducer _producer;
    readonly NpgsqlCommand _select;
    ulong _batches;
    long _committed;
    long _pollingSince;

    PollingSession(CdcOptions options, ILogger logger, CdcMetrics metrics, RelayStatus status, NpgsqlConnection connection,
        OutboxTableReader reader, RelayMemory memory, IValueSchemas? schemas)
    {
        _options = options;
        _logger = logger;
        _metrics = metrics;
        _status = status;
        _connection = connection;
        _reader = reader;
        _mapper = new OutboxEventMapper(new TopicRouter(options.Kafka.TopicTemplate), options.Kafka.DeadLetterTopic, RecordFormat.From(options));
        _tracker = new PositionTracker(options.Relay.MaxInFlightEvents, options.Relay.MaxInFlightBytes);
        KafkaRecordProducer? producer = null;
        _publisher = new EventPublisher(
            reports => producer = new KafkaRecordProducer(options.Kafka, logger, reports, depth => status.ProducerQueueDepth = depth),
            _ => new KafkaTopicAdmin(producer!.Admin, options.Kafka.Topics),
            _mapper, _tracker, metrics, status, logger, memory.KnownTopics, schemas, memory.Refusals);
        _producer = producer!;
        _select = new NpgsqlCommand(
            $"SELECT {reader.Columns} FROM {reader.From} ORDER BY {reader.OrderBy} LIMIT {options.Postgres.Polling.BatchSize} FOR UPDATE SKIP LOCKED",
            connection);
    }

    /// <summary>Checks the table and the role, opens the connection and a producer, and checks that Kafka answers.</summary>
    public static async Task<PollingSession> OpenAsync(
        CdcOptions options, ILogger logger, CdcMetrics metrics, RelayStatus status, RelayMemory memory, CancellationToken ct,
        IValueSchemas? schemas = null)
    {
        var reader = await PollingTable.PrepareAsync(options.Postgres, logger, ct,
            AdditionalPlacement.Parse(options.Kafka.AdditionalPlacement, options.Kafka.ValueFormat));
        status.DatabaseReachable = true;
        var connection = new NpgsqlConnection(options.Postgres.ConnectionString);
        try
        {
            await connection.OpenAsync(ct);
            var session = new PollingSession(options, logger, metrics, status, connection, reader, memory, schemas);
            try
            {
                // Fail here, before locking anything, when no broker answers.
                var brokers = await Task.Run(() => session._producer.CountBrokers(TimeSpan.FromSeconds(10)), ct);
                status.SetKafkaReachable(brokers > 0);
                return session;
            }
            catch
            {
                await session.DisposeAsync();
                throw;
            }
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    /// <inheritdoc />
    public bool MadeProgress =>
        Interlocked.Read(ref _committed) > 0
        || (_pollingSince != 0 && Stopwatch.GetElapsedTime(_pollingSince) > _options.Relay.MaxRetryBackoff);

    /// <inheritdoc />
    public async Task RunAsync(CancellationToken stopping, Action? onStreaming = null)
    {
        using var publisherStop = new CancellationTokenSource();
        var publishing = _publisher.RunAsync(publisherStop.Token);
        try
        {
            // "Streaming" is what readiness and cdc_stream_up report: this replica does its job.
            _status.Streaming = true;
            _status.Standby = false;
            _pollingSince = Stopwatch.GetTimestamp();
            _metrics.StreamStarted();
            onStreaming?.Invoke();
            var polling = _options.Postgres.Polling;
            _logger.LogInformation("Polling table {Table} in batches of {BatchSize} rows (every {Interval} while it is empty)",
                _reader.Table.Name, polling.BatchSize, polling.Interval);

            while (!stopping.IsCancellationRequested)
            {
                var relayed = await RelayBatchAsync(stopping);
                if (relayed == 0)
                    await Task.Delay(polling.Interval, stopping);
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            // Stopped between batches, or while selecting one (its transaction rolls back).
        }
        finally
        {
            _status.Streaming = false;
            _status.InFlightEvents = _tracker.InFlightEvents;
            _status.InFlightBytes = _tracker.InFlightBytes;
            await publisherStop.CancelAsync();
            try
            {
                await publishing;
            }
            catch
            {
                // Ending the session; what failed was already reported.
            }
        }
    }

    /// <summary>
    /// One batch: select, publish, wait for the acknowledgements, delete, commit. Returns the rows relayed (0 when the
    /// table had none to take). Rows are published as they arrive, within the in-flight bounds, so a batch of large rows
    /// is not held in memory whole. A stop lets a batch already begun finish within <c>Cdc:Relay:ShutdownTimeout</c>;
    /// past that it is rolled back.
    /// </summary>
    async Task<int> RelayBatchAsync(CancellationToken stopping)
    {
        await using var transaction = await _connection.BeginTransactionAsync(stopping);
        using var finishing = new CancellationTokenSource();
        await using var onStop = stopping.Register(() => finishing.CancelAfter(_options.Relay.ShutdownTimeout));
        _select.Transaction = transaction;
        PositionTracker.Transaction? batch = null;
        var taken = new List<(uint TableOid, NpgsqlTid Ctid)>();
        try
        {
            await foreach (var row in _reader.ReadAsync(_select, finishing.Token))
            {
                if (batch is null)
                {
                    batch = _tracker.Begin(row.CommitTimeOrCreatedAt)!;
                    _status.DelaySeconds = row.Row.CreatedAt is { } oldest ? Math.Max(0, (DateTime.UtcNow - oldest).TotalSeconds) : 0;
                }
                taken.Add((row.TableOid, row.Ctid));
                await WaitAsync(_tracker.WaitForRoomAsync(finishing.Token));
                var source = new TransactionInfo(0, row.Xmin, row.CommitTimeOrCreatedAt, Origin.Polling);
                _publisher.Publish(_mapper.Map(row.Row, source), batch, source.CommitTime);
            }
            if (batch is null)
            {
                await transaction.CommitAsync(finishing.Token);
                _status.DelaySeconds = 0;
                return 0;
            }
            _tracker.Commit(batch, ++_batches);
            _metrics.TableRowsRead("polling", taken.Count);
            _status.InFlightEvents = _tracker.InFlightEvents;
            _status.InFlightBytes = _tracker.InFlightBytes;
            await WaitAsync(_tracker.WhenConfirmableAsync(_batches, finishing.Token));
        }
        catch (OperationCanceledException) when (finishing.IsCancellationRequested)
        {
            _logger.LogWarning("Stopping with {Count} events of the batch not acknowledged; its {Rows} rows stay in the table and " +
                               "will be relayed again after restart", _tracker.InFlightEvents, taken.Count);
            return taken.Count; // disposing the transaction rolls it back
        }

        // Kafka has every event of the batch: the rows may go. Deleted by their place (partition and tuple), which the
        // row locks keep stable until the commit and which needs no decoded value, so unreadable rows go too.
        await DeleteAsync(transaction, taken);
        await transaction.CommitAsync(CancellationToken.None);
        Interlocked.Increment(ref _committed);
        _status.InFlightEvents = _tracker.InFlightEvents;
        _status.InFlightBytes = _tracker.InFlightBytes;
        return taken.Count;
    }

    /// <summary>Waits for <paramref name="task"/> unless the publisher fails first: then throws its failure (the batch rolls back).</summary>
    async Task WaitAsync(Task task)
    {
        if (await Task.WhenAny(task, _publisher.Failure) != task)
            throw await _publisher.Failure;
        await task;
    }

    async Task DeleteAsync(NpgsqlTransaction transaction, List<(uint TableOid, NpgsqlTid Ctid)> rows)
    {
        foreach (var group in rows.GroupBy(r => r.TableOid))
        {
            // A partition's (or an inheriting table's) rows are deleted from it: ctids repeat across partitions.
            var from = group.Key == _reader.Table.Oid ? _reader.From : await RelationNameAsync(transaction, group.Key);
            // Npgsql writes no tid[]; the text form casts to one, and the server still plans a TID scan.
            await using var delete = new NpgsqlCommand($"DELETE FROM ONLY {from} WHERE ctid = ANY($1::tid[])", _connection, transaction);
            string[] ctids = [.. group.Select(r => $"({r.Ctid.BlockNumber},{r.Ctid.OffsetNumber})")];
            delete.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = ctids });
            var deleted = await delete.ExecuteNonQueryAsync(CancellationToken.None);
            if (deleted != ctids.Length)
                _logger.LogWarning("Deleted {Deleted} of the {Count} relayed rows of {Relation}; the others were gone already",
                    deleted, ctids.Length, from);
        }
    }

    /// <summary>A relation's name as the server quotes it; the batch's row locks keep it from being renamed or dropped.</summary>
    async Task<string> RelationNameAsync(NpgsqlTransaction transaction, uint oid)
    {
        await using var command = new NpgsqlCommand("SELECT $1::regclass::text", _connection, transaction);
        command.Parameters.AddWithValue(NpgsqlDbType.Oid, oid);
        return (string)(await command.ExecuteScalarAsync(CancellationToken.None))!;
    }

    public async ValueTask DisposeAsync()
    {
        _publisher.Dispose();
        await _select.DisposeAsync();
        await _connection.DisposeAsync();
    }
}
