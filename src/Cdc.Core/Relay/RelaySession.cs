using Cdc.Configuration;
using Cdc.Mapping;
using Cdc.Positions;
using Cdc.Publishing;
using Cdc.Replication;
using Cdc.Telemetry;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using Npgsql;
using Npgsql.Replication;
using Npgsql.Replication.PgOutput;
using Npgsql.Replication.PgOutput.Messages;
using NpgsqlTypes;
using System.Diagnostics;

namespace Cdc.Relay;

/// <summary>A delivery failed in a way a new stream and producer can fix; the session ends and the relay resumes from the slot.</summary>
public sealed class DeliveryFailedException(string message) : Exception(message);

/// <summary>
/// One pass of the pipeline: a replication stream, a producer and a position tracker, from opening to the first
/// failure or the stop. Reads the slot, maps each outbox insert, produces it, and confirms the slot to the
/// tracker's watermark. Never reused: after a failure everything is rebuilt and the server resends from the slot.
/// </summary>
sealed class RelaySession : IAsyncDisposable
{
    static readonly TimeSpan SlotMonitorInterval = TimeSpan.FromSeconds(5);
    static readonly TimeSpan StartGrace = TimeSpan.FromMilliseconds(750);

    readonly CdcOptions _options;
    readonly TableName? _table;
    readonly ILogger _logger;
    readonly CdcMetrics _metrics;
    readonly RelayStatus _status;
    readonly LogicalReplicationConnection _connection;
    readonly KafkaPublisher _publisher;
    readonly OutboxEventMapper _mapper;
    readonly PositionTracker _tracker;
    readonly CancellationTokenSource _failed = new();
    readonly Dictionary<uint, OutboxRelationLayout?> _layouts = [];
    Exception? _failure;
    volatile bool _stopping;
    ulong _lastConfirmed;

    RelaySession(CdcOptions options, ILogger logger, CdcMetrics metrics, RelayStatus status, LogicalReplicationConnection connection)
    {
        _options = options;
        _table = options.Postgres.OutboxTable;
        _logger = logger;
        _metrics = metrics;
        _status = status;
        _connection = connection;
        _mapper = new OutboxEventMapper(new TopicRouter(options.Kafka.TopicTemplate), options.Kafka.DeadLetterTopic);
        _tracker = new PositionTracker(options.Relay.MaxInFlightEvents, options.Relay.MaxInFlightBytes);
        _publisher = new KafkaPublisher(options.Kafka, logger, OnProducerError, depth => status.ProducerQueueDepth = depth);
    }

    public static async Task<RelaySession> OpenAsync(CdcOptions options, ILogger logger, CdcMetrics metrics, RelayStatus status, CancellationToken ct)
    {
        if (await OutboxSlot.PrepareAsync(options.Postgres, logger, ct) is not null)
            metrics.SlotRecreated();
        status.DatabaseReachable = true;
        var connection = new LogicalReplicationConnection(options.Postgres.ConnectionString);
        try
        {
            await connection.Open(ct);
            var session = new RelaySession(options, logger, metrics, status, connection);
            try
            {
                // Fail here, before reading anything, when no broker answers.
                var brokers = await Task.Run(() => session._publisher.CountBrokers(TimeSpan.FromSeconds(10)), ct);
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
    /// Streams until <paramref name="stopping"/> fires (then lets in-flight events be acknowledged, confirms and
    /// returns) or until something fails (then confirms what was acknowledged and throws).
    /// </summary>
    public async Task RunAsync(CancellationToken stopping)
    {
        using var readCancel = new CancellationTokenSource();
        var read = ReadAsync(readCancel.Token);
        var confirm = ConfirmLoopAsync(readCancel.Token);
        var slotMonitor = SlotMonitorLoopAsync(readCancel.Token);
        try
        {
            // START_REPLICATION fails at once when another reader holds the slot; only after that is this a stream.
            if (await Task.WhenAny(read, Task.Delay(StartGrace, stopping)) == read)
                await read;
            _status.Streaming = true;
            _status.Standby = false;
            _metrics.StreamStarted();
            _logger.LogInformation("Streaming slot {Slot} (publication {Publication}, table {Table}, message prefix {Prefix})",
                _options.Postgres.Slot, _options.Postgres.Publication, _table?.ToString() ?? "none",
                _options.Postgres.MessagePrefix.Length > 0 ? _options.Postgres.MessagePrefix : "(messages off)");

            var stopped = Task.Delay(Timeout.Infinite, stopping);
            var failed = Task.Delay(Timeout.Infinite, _failed.Token);
            var first = await Task.WhenAny(read, stopped, failed);

            // Stop taking new work; the watermark keeps following acknowledgements of what is in flight.
            _stopping = true;
            _tracker.Seal();

            if (first == read)
            {
                // The stream ended or broke: nothing can be confirmed on this connection any more.
                try
                {
                    await read;
                }
                catch (NpgsqlException e) when (e.Message.Contains("CommandComplete", StringComparison.Ordinal))
                {
                    // Npgsql's words for a server that ended COPY: a fast shutdown, not a bug.
                    throw new NpgsqlException("PostgreSQL ended the replication stream (the server is shutting down or restarting)", e);
                }
                throw new NpgsqlException("PostgreSQL ended the replication stream.");
            }

            if (first == stopped && _failure is null)
            {
                var left = await Task.Run(() => _publisher.Flush(_options.Relay.ShutdownTimeout));
                if (left > 0)
                    _logger.LogWarning("Stopping with {Count} events not acknowledged; they will be sent again after restart", left);
            }

            await ConfirmAsync(CancellationToken.None);
            _logger.LogInformation("Confirmed slot {Slot} at {Lsn}", _options.Postgres.Slot, new NpgsqlLogSequenceNumber(_lastConfirmed));
            if (_failure is not null)
                throw _failure;
        }
        finally
        {
            _status.Streaming = false;
            await readCancel.CancelAsync();
            await Quietly(read);
            await Quietly(confirm);
            await Quietly(slotMonitor);
        }
    }

    async Task ReadAsync(CancellationToken ct)
    {
        var slot = new PgOutputReplicationSlot(_options.Postgres.Slot);
        // Binary values: no text parsing of uuid/timestamptz, bytea as is. Messages: the table-less mode's events.
        var pgOptions = new PgOutputReplicationOptions(_options.Postgres.Publication, PgOutputProtocolVersion.V1, binary: true, messages: true);
        PositionTracker.Transaction? transaction = null;
        var info = default(TransactionInfo);
        await foreach (var message in _connection.StartReplication(slot, pgOptions, ct))
        {
            if (_stopping)
                continue;
            switch (message)
            {
                case BeginMessage begin:
                    transaction = _tracker.Begin(begin.TransactionCommitTimestamp);
                    info = new TransactionInfo((ulong)begin.TransactionFinalLsn, begin.TransactionXid, begin.TransactionCommitTimestamp);
                    break;
                case RelationMessage relation when _table is { } table:
                    _layouts[relation.RelationId] = OutboxRelationLayout.For(relation, table, _options.Postgres.Columns);
                    break;
                case InsertMessage insert when transaction is not null
                                               && _layouts.GetValueOrDefault(insert.Relation.RelationId) is { } layout:
                    await _tracker.WaitForRoomAsync(ct);
                    var row = await OutboxRowReader.ReadAsync(insert, layout, ct);
                    Publish(_mapper.Map(row, info), transaction, info);
                    break;
                case LogicalDecodingMessage emitted when transaction is not null && IsOutboxMessage(emitted):
                    await _tracker.WaitForRoomAsync(ct);
                    var content = await ReadToEndAsync(emitted.Data, ct);
                    Publish(_mapper.Map(content, info, (ulong)emitted.MessageLsn), transaction, info);
                    break;
                case CommitMessage commit when transaction is not null:
                    _tracker.Commit(transaction, (ulong)commit.TransactionEndLsn);
                    transaction = null;
                    break;
            }
        }
    }

    /// <summary>A transactional message with the configured prefix (non-transactional ones are never relayed).</summary>
    bool IsOutboxMessage(LogicalDecodingMessage message) =>
        (message.Flags & 1) == 1 && _options.Postgres.MessagePrefix.Length > 0 && message.Prefix == _options.Postgres.MessagePrefix;

    static async Task<byte[]> ReadToEndAsync(Stream data, CancellationToken ct)
    {
        using var buffer = new MemoryStream();
        await data.CopyToAsync(buffer, ct);
        return buffer.ToArray();
    }

    void Publish(MappingResult mapped, PositionTracker.Transaction transaction, TransactionInfo info)
    {
        var record = mapped.Record ?? mapped.DeadLetter!;
        var pending = new PendingEvent(record, transaction, record.Value.Length + record.Key.Length, info.CommitTime);
        _tracker.Add(transaction, pending.Bytes);
        if (mapped.IsDeadLetter)
        {
            ProduceDeadLetter(record, pending, mapped.DeadLetterReason!);
            return;
        }
        pending.Activity = OutboxTracing.StartSend(record);
        Produce(record, error => OnDelivery(error, pending));
    }

    void OnDelivery(Error error, PendingEvent pending)
    {
        var outcome = DeliveryErrors.Classify(error);
        OutboxTracing.Stop(pending.Activity, outcome == DeliveryOutcome.Acknowledged ? null : error.Reason);
        switch (outcome)
        {
            case DeliveryOutcome.Acknowledged:
                _tracker.Acknowledge(pending.Transaction, pending.Bytes);
                if (_status.SetKafkaReachable(true))
                    _logger.LogInformation("Kafka acknowledges events again");
                _metrics.Published(pending.Record.Topic, (DateTime.UtcNow - pending.CommitTime).TotalSeconds,
                    Stopwatch.GetElapsedTime(pending.ProducedAt).TotalSeconds);
                break;
            case DeliveryOutcome.DeadLetter:
                var tooLarge = DeliveryErrors.IsTooLarge(error);
                var reason = $"Kafka refused the record on {pending.Record.Topic}: {error.Code} ({error.Reason})";
                ProduceDeadLetter(_mapper.DeadLetter(pending.Record, reason, tooLarge), pending, tooLarge ? "too_large" : "rejected");
                break;
            default:
                Fail(error, pending.Record);
                break;
        }
    }

    void ProduceDeadLetter(OutboxRecord deadLetter, PendingEvent pending, string reason)
    {
        Produce(deadLetter, error =>
        {
            if (error.Code == ErrorCode.NoError)
            {
                _tracker.Acknowledge(pending.Transaction, pending.Bytes);
                _metrics.DeadLettered(reason);
            }
            else
            {
                Fail(error, deadLetter);
            }
        });
    }

    /// <summary>Produces, turning an immediate refusal into the same report a delivery would give.</summary>
    void Produce(OutboxRecord record, Action<Error> onDelivery)
    {
        while (true)
        {
            try
            {
                _publisher.Produce(record, onDelivery);
                return;
            }
            catch (ProduceException<byte[], byte[]> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
            {
                // librdkafka's own queue is full (its bound is set above ours unless overridden): wait for deliveries.
                Thread.Sleep(5);
            }
            catch (ProduceException<byte[], byte[]> e)
            {
                onDelivery(e.Error);
                return;
            }
        }
    }

    void Fail(Error error, OutboxRecord record)
    {
        _metrics.DeliveryFailed(record.Topic);
        _status.SetKafkaReachable(false);
        var outcome = DeliveryErrors.Classify(error);
        Exception failure = outcome == DeliveryOutcome.Fatal
            ? new CdcStartupException($"Kafka refused to take events on {record.Topic}: {error.Code} ({error.Reason}). " +
                                      "Check the producer's credentials, ACLs and Cdc:Kafka:Producer settings.")
            : new DeliveryFailedException($"Delivery to {record.Topic} failed: {error.Code} ({error.Reason})");
        // Only the first failure counts; the rest follow from it.
        if (Interlocked.CompareExchange(ref _failure, failure, null) is null)
            _failed.Cancel();
    }

    void OnProducerError(Error error)
    {
        if (error.IsFatal)
        {
            // The idempotent producer cannot continue (e.g. a sequence gap): rebuild it and resume from the slot.
            if (Interlocked.CompareExchange(ref _failure, new DeliveryFailedException($"Producer failed: {error.Code} ({error.Reason})"), null) is null)
                _failed.Cancel();
        }
        else if (error.Code == ErrorCode.Local_AllBrokersDown && _status.SetKafkaReachable(false))
        {
            _logger.LogWarning("Kafka unreachable ({Reason}); events stay in flight and the slot is not confirmed past them", error.Reason);
        }
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
        var received = (ulong)_connection.LastReceivedLsn;
        var confirmable = _tracker.ConfirmableGiven(received);
        _status.InFlightEvents = _tracker.InFlightEvents;
        _status.InFlightBytes = _tracker.InFlightBytes;
        _status.DelaySeconds = _tracker.OldestPendingCommitTime is { } oldest ? Math.Max(0, (DateTime.UtcNow - oldest).TotalSeconds) : 0;
        if (confirmable <= _lastConfirmed)
            return;
        _connection.SetReplicationStatus(new NpgsqlLogSequenceNumber(confirmable));
        await _connection.SendStatusUpdate(ct);
        _lastConfirmed = confirmable;
        _status.ConfirmedLsn = confirmable;
        if (_tracker.ConfirmableCommitTime is { } committed)
            _status.ConfirmedCommitTime = committed;
    }

    /// <summary>Reads the server's WAL position and the slot's health every few seconds, for lag and slot metrics.</summary>
    async Task SlotMonitorLoopAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await using var connection = new NpgsqlConnection(_options.Postgres.ConnectionString);
                await connection.OpenAsync(ct);
                await using var command = new NpgsqlCommand(
                    """
                    SELECT pg_current_wal_lsn(), s.wal_status, s.safe_wal_size,
                           pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint
                    FROM (SELECT 1) AS one
                    LEFT JOIN pg_replication_slots s ON s.slot_name = $1
                    """, connection);
                command.Parameters.AddWithValue(_options.Postgres.Slot);
                await using var reader = await command.ExecuteReaderAsync(ct);
                await reader.ReadAsync(ct);
                _status.ServerWalLsn = (ulong)reader.GetFieldValue<NpgsqlLogSequenceNumber>(0);
                _status.Slot = reader.IsDBNull(1)
                    ? null
                    : new SlotHealth(reader.GetString(1), reader.IsDBNull(2) ? null : reader.GetInt64(2), reader.IsDBNull(3) ? 0 : reader.GetInt64(3));
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                _logger.LogDebug(e, "Could not read the slot's health");
            }
            await Task.Delay(SlotMonitorInterval, ct);
        }
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
        _failed.Dispose();
    }
}
