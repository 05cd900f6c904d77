using System.Collections.Concurrent;
using System.Diagnostics;
using Cdc.Configuration;
using Cdc.Mapping;
using Cdc.Positions;
using Cdc.Publishing;
using Cdc.Replication;
using Cdc.Telemetry;
using Microsoft.Extensions.Logging;
using Npgsql;
using Npgsql.Replication;
using NpgsqlTypes;

namespace Cdc.Relay;

/// <summary>
/// One pass of the pipeline, from opening to the first failure or the stop: the slot reader, the mapper, the publisher,
/// the position tracker and the slot confirmer on one replication connection and one producer. Never reused: after a
/// failure everything is rebuilt and the server resends from the slot's confirmed position.
/// </summary>
sealed class RelaySession : IRelaySession
{
    static readonly TimeSpan StartGrace = TimeSpan.FromMilliseconds(750);

    readonly CdcOptions _options;
    readonly ILogger _logger;
    readonly CdcMetrics _metrics;
    readonly RelayStatus _status;
    readonly LogicalReplicationConnection _connection;
    readonly SlotReader _reader;
    readonly OutboxEventMapper _mapper;
    readonly PositionTracker _tracker;
    readonly EventPublisher _publisher;
    readonly KafkaRecordProducer _producer;
    readonly SlotConfirmer _confirmer;
    readonly SlotHealthMonitor _monitor;
    volatile bool _stopping;
    long _streamingSince;

    RelaySession(CdcOptions options, ILogger logger, CdcMetrics metrics, RelayStatus status, LogicalReplicationConnection connection,
        PreparedSlot slot, ConcurrentDictionary<string, byte> knownTopics)
    {
        _options = options;
        _logger = logger;
        _metrics = metrics;
        _status = status;
        _connection = connection;
        var relations = slot.Table is { } table ? new OutboxRelations(table, options.Postgres.Columns, options.Postgres.ConnectionString, logger) : null;
        _reader = new SlotReader(connection, options.Postgres, relations);
        _mapper = new OutboxEventMapper(new TopicRouter(options.Kafka.TopicTemplate), options.Kafka.DeadLetterTopic);
        _tracker = new PositionTracker(options.Relay.MaxInFlightEvents, options.Relay.MaxInFlightBytes);
        KafkaRecordProducer? producer = null;
        _publisher = new EventPublisher(
            reports => producer = new KafkaRecordProducer(options.Kafka, logger, reports, depth => status.ProducerQueueDepth = depth),
            _ => new KafkaTopicAdmin(producer!.Handle, options.Kafka.Topics),
            _mapper, _tracker, metrics, status, logger, knownTopics);
        _producer = producer!;
        _confirmer = SlotConfirmer.For(connection, slot.ConfirmedLsn);
        _monitor = new SlotHealthMonitor(options.Postgres, slot.Table, status, logger);
        status.ConfirmedLsn = slot.ConfirmedLsn;
    }

    /// <summary>Prepares the server side, opens a replication connection and a producer, and checks that Kafka answers.</summary>
    public static async Task<RelaySession> OpenAsync(
        CdcOptions options, ILogger logger, CdcMetrics metrics, RelayStatus status, ConcurrentDictionary<string, byte> knownTopics,
        CancellationToken ct)
    {
        var slot = await OutboxSlot.PrepareAsync(options.Postgres, logger, ct);
        if (slot.Gap is not null)
            metrics.SlotRecreated();
        status.DatabaseReachable = true;
        var connection = new LogicalReplicationConnection(options.Postgres.ConnectionString);
        try
        {
            await connection.Open(ct);
            var session = new RelaySession(options, logger, metrics, status, connection, slot, knownTopics);
            try
            {
                // Fail here, before reading anything, when no broker answers.
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

    /// <summary>
    /// Whether this session got anywhere: it moved the slot, or streamed for longer than the longest backoff. Only
    /// then does the relay's backoff start over, so a failure that comes right after every start backs off for real.
    /// </summary>
    public bool MadeProgress =>
        _confirmer.Advanced || (_streamingSince != 0 && Stopwatch.GetElapsedTime(_streamingSince) > _options.Relay.MaxRetryBackoff);

    /// <summary>
    /// Streams until <paramref name="stopping"/> fires (then lets in-flight events be acknowledged, confirms and
    /// returns) or until something fails (then confirms what was acknowledged and throws).
    /// </summary>
    public async Task RunAsync(CancellationToken stopping, Action? onStreaming = null)
    {
        using var readCancel = new CancellationTokenSource();
        using var confirmCancel = new CancellationTokenSource();
        var read = ReadAsync(readCancel.Token);
        var publishing = _publisher.RunAsync(readCancel.Token);
        var confirming = ConfirmLoopAsync(confirmCancel.Token);
        var monitoring = _monitor.RunAsync(readCancel.Token);
        try
        {
            // START_REPLICATION fails at once when another reader holds the slot; only after that is this a stream.
            if (await Task.WhenAny(read, Task.Delay(StartGrace, stopping)) == read)
                await read;
            _status.Streaming = true;
            _status.Standby = false;
            _streamingSince = Stopwatch.GetTimestamp();
            _metrics.StreamStarted();
            onStreaming?.Invoke();
            _logger.LogInformation("Streaming slot {Slot} (publication {Publication}, table {Table}, message prefix {Prefix})",
                _options.Postgres.Slot, _options.Postgres.Publication, _options.Postgres.OutboxTable?.ToString() ?? "none",
                _options.Postgres.MessagePrefix.Length > 0 ? _options.Postgres.MessagePrefix : "(messages off)");

            var stopped = Task.Delay(Timeout.Infinite, stopping);
            var first = await Task.WhenAny(read, stopped, _publisher.Failure, _monitor.Problem);

            // Stop taking new work; the watermark keeps following acknowledgements of what is in flight.
            _stopping = true;
            _tracker.Seal();

            if (first == read)
                throw await StreamEndedAsync(read);

            if (first == stopped)
            {
                var left = await _publisher.DrainAsync(_options.Relay.ShutdownTimeout);
                if (left > 0)
                    _logger.LogWarning("Stopping with {Count} events not acknowledged; they will be sent again after restart", left);
            }

            // One confirm at a time, and the last one after the loop's: the slot only ever moves forward.
            await confirmCancel.CancelAsync();
            await Quietly(confirming);
            await ConfirmAsync(CancellationToken.None);
            _logger.LogInformation("Confirmed slot {Slot} at {Lsn}", _options.Postgres.Slot, new NpgsqlLogSequenceNumber(_confirmer.Confirmed));
            if (_publisher.Failure.IsCompleted)
                throw await _publisher.Failure;
            if (_monitor.Problem.IsCompleted)
                throw await _monitor.Problem;
        }
        finally
        {
            _status.Streaming = false;
            await confirmCancel.CancelAsync();
            await readCancel.CancelAsync();
            await Quietly(read);
            await Quietly(publishing);
            await Quietly(confirming);
            await Quietly(monitoring);
        }
    }

    /// <summary>The whole path of an event: read from the slot, mapped, published; its transaction tracked for the confirm.</summary>
    async Task ReadAsync(CancellationToken ct)
    {
        PositionTracker.Transaction? transaction = null;
        await foreach (var change in _reader.ReadAsync(ct))
        {
            if (_stopping)
                continue;
            switch (change.Kind)
            {
                case SlotChangeKind.Begin:
                    transaction = _tracker.Begin(change.Transaction.CommitTime);
                    break;
                case SlotChangeKind.Row when transaction is not null:
                    await _tracker.WaitForRoomAsync(ct);
                    _publisher.Publish(_mapper.Map(change.Row!, change.Transaction), transaction, change.Transaction.CommitTime);
                    break;
                case SlotChangeKind.Message when transaction is not null:
                    await _tracker.WaitForRoomAsync(ct);
                    _publisher.Publish(_mapper.Map(change.Message!, change.Transaction, change.Lsn), transaction, change.Transaction.CommitTime);
                    break;
                case SlotChangeKind.Commit when transaction is not null:
                    _tracker.Commit(transaction, change.Lsn);
                    transaction = null;
                    break;
            }
        }
    }

    static async Task<Exception> StreamEndedAsync(Task read)
    {
        // The stream ended or broke: nothing can be confirmed on this connection any more.
        try
        {
            await read;
        }
        catch (NpgsqlException e) when (e.Message.Contains("CommandComplete", StringComparison.Ordinal))
        {
            // Npgsql's words for a server that ended COPY: a fast shutdown, not a bug.
            return new NpgsqlException("PostgreSQL ended the replication stream (the server is shutting down or restarting)", e);
        }
        catch (Exception e)
        {
            return e;
        }
        return new NpgsqlException("PostgreSQL ended the replication stream.");
    }

    async Task ConfirmLoopAsync(CancellationToken ct)
    {
        using var timer = new PeriodicTimer(_options.Relay.ConfirmInterval);
        while (await timer.WaitForNextTickAsync(ct))
        {
            try
            {
                await ConfirmAsync(ct);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                _logger.LogDebug(e, "Could not send the slot position; retrying");
            }
        }
    }

    /// <summary>Sends the watermark to the server when it moved. Reads the received position first (see the tracker).</summary>
    async Task ConfirmAsync(CancellationToken ct)
    {
        var received = _reader.LastReceivedLsn;
        var confirmable = _tracker.ConfirmableGiven(received);
        _status.InFlightEvents = _tracker.InFlightEvents;
        _status.InFlightBytes = _tracker.InFlightBytes;
        _status.DelaySeconds = _tracker.OldestPendingCommitTime is { } oldest ? Math.Max(0, (DateTime.UtcNow - oldest).TotalSeconds) : 0;
        if (!await _confirmer.ConfirmAsync(confirmable, ct))
            return;
        _status.ConfirmedLsn = _confirmer.Confirmed;
        if (_tracker.ConfirmableCommitTime is { } committed)
            _status.ConfirmedCommitTime = committed;
    }

    static async Task Quietly(Task task)
    {
        try
        {
            await task;
        }
        catch
        {
            // Ending the session; what failed was already reported.
        }
    }

    public async ValueTask DisposeAsync()
    {
        _publisher.Dispose();
        await _connection.DisposeAsync();
    }
}
