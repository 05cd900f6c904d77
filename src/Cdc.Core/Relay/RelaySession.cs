using System.Collections.Concurrent;
using System.Data;
using System.Diagnostics;
using Cdc.Configuration;
using Cdc.Mapping;
using Cdc.Outbox.V1;
using Cdc.Positions;
using Cdc.Publishing;
using Cdc.Replication;
using Cdc.Table;
using Cdc.Telemetry;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using Npgsql;
using Npgsql.Replication;
using NpgsqlTypes;

namespace Cdc.Relay;

/// <summary>
/// One pass of the pipeline, from opening to the first failure or the stop: the slot reader, the mapper, the publisher,
/// the position tracker, the slot confirmer and the checkpoint on one replication connection and one producer. Never
/// reused: after a failure everything is rebuilt and the server resends from the slot's confirmed position.
/// </summary>
sealed class RelaySession : IRelaySession
{
    static readonly TimeSpan CheckpointInterval = TimeSpan.FromSeconds(1);
    static readonly TimeSpan ProgressInterval = TimeSpan.FromSeconds(10);

    readonly CdcOptions _options;
    readonly ILogger _logger;
    readonly CdcMetrics _metrics;
    readonly RelayStatus _status;
    readonly LogicalReplicationConnection _connection;
    readonly OutboxEventMapper _mapper;
    readonly RecordFormat _format;
    readonly PositionTracker _tracker;
    readonly EventPublisher _publisher;
    readonly KafkaRecordProducer _producer;
    readonly KafkaCheckpointStore _checkpoints;
    readonly SlotIdentity _identity;
    readonly RelayMemory _memory;
    // Exactly-once delivery: the Kafka transactions, a plain producer for the checkpoints written outside them (at the
    // slot's creation, before this replica may fence anyone), and the position below which source transactions are
    // already committed to Kafka.
    readonly KafkaTransactions? _transactions;
    readonly Lazy<IProducer<byte[], byte[]>> _plainProducer;
    SlotClaim? _claim;
    ulong _skipBelow;
    PreparedSlot _slot = null!;
    SlotReader _reader = null!;
    SlotConfirmer _confirmer = null!;
    SlotHealthMonitor _monitor = null!;
    volatile bool _stopping;
    long _streamingSince;
    // The table read this session does before streaming, while its rows are not all acknowledged.
    PendingTableRead? _pendingRead;
    PositionTracker.Transaction? _tableReadTransaction;
    SlotCheckpoint? _lastCheckpoint;
    long _lastCheckpointAt;
    Task _checkpointWrite = Task.CompletedTask;
    // Set once the session may hand events over (exactly once: after the transactional producer is registered).
    readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);

    RelaySession(CdcOptions options, ILogger logger, CdcMetrics metrics, RelayStatus status, LogicalReplicationConnection connection,
        SlotIdentity identity, RelayMemory memory, IValueSchemas? schemas)
    {
        _options = options;
        _logger = logger;
        _metrics = metrics;
        _status = status;
        _connection = connection;
        _identity = identity;
        _memory = memory;
        var exactlyOnce = options.Kafka.Delivery == DeliveryMode.ExactlyOnce;
        _format = RecordFormat.From(options);
        _mapper = new OutboxEventMapper(new TopicRouter(options.Kafka.TopicTemplate), options.Kafka.DeadLetterTopic, _format);
        _tracker = new PositionTracker(options.Relay.MaxInFlightEvents, options.Relay.MaxInFlightBytes);
        KafkaRecordProducer? producer = null;
        _publisher = new EventPublisher(
            reports => producer = new KafkaRecordProducer(options.Kafka, logger, reports, depth => status.ProducerQueueDepth = depth,
                exactlyOnce ? TransactionalId(identity) : null),
            _ => new KafkaTopicAdmin(producer!.Admin, options.Kafka.Topics),
            _mapper, _tracker, metrics, status, logger, memory.KnownTopics, schemas, memory.Refusals, transactional: exactlyOnce);
        _producer = producer!;
        // Checkpoints go through a producer of their own (made on first use): a checkpoint write Kafka refuses must not
        // make the events' producer fatal (it runs with the gapless guarantee), and with exactly-once delivery the
        // checkpoints written outside a Kafka transaction (at the slot's creation) cannot use the transactional one.
        _plainProducer = new(() =>
        {
            var config = KafkaRecordProducer.ProducerConfig(options.Kafka);
            config.Set("enable.gapless.guarantee", "false");
            return new ProducerBuilder<byte[], byte[]>(config).SetLogHandler((_, _) => { }).Build();
        });
        _checkpoints = new KafkaCheckpointStore(options.Kafka,
            async (topic, key, value) => await _plainProducer.Value.ProduceAsync(topic, new Message<byte[], byte[]> { Key = key, Value = value }),
            _producer.Admin);
        if (exactlyOnce)
        {
            var timeout = options.Kafka.Producer.TryGetValue("transaction.timeout.ms", out var ms) && int.TryParse(ms, out var t) ? t : 60_000;
            _transactions = new KafkaTransactions(_producer, _tracker, (lsn, time) => _identity.Checkpoint(lsn, time, _pendingRead),
                options.Kafka.CheckpointTopic, options.Relay.TransactionMaxEvents, options.Relay.TransactionLinger,
                TimeSpan.FromMilliseconds(timeout), metrics, logger);
        }
    }

    /// <summary>One per server, database and slot: a second replica's producer fences the first's (a zombie).</summary>
    public static string TransactionalId(SlotIdentity identity) => $"cdc-{identity.SystemId}-{identity.Database}-{identity.Slot}";

    /// <summary>
    /// Opens a replication connection and a producer, checks that Kafka answers, reads the checkpoint, and prepares the
    /// server side: the publication, and the slot (found, found lost, or created).
    /// </summary>
    public static async Task<RelaySession> OpenAsync(
        CdcOptions options, ILogger logger, CdcMetrics metrics, RelayStatus status, RelayMemory memory, CancellationToken ct,
        IValueSchemas? schemas = null)
    {
        var table = await OutboxSlot.CheckServerAsync(options.Postgres, logger, ct,
            AdditionalPlacement.Parse(options.Kafka.AdditionalPlacement, options.Kafka.ValueFormat));
        status.DatabaseReachable = true;
        var claim = await SlotClaim.TakeAsync(options.Postgres, ct);
        var connection = new LogicalReplicationConnection(options.Postgres.ConnectionString);
        RelaySession? session = null;
        try
        {
            await connection.Open(ct);
            var system = await connection.IdentifySystem(ct);
            var identity = new SlotIdentity(system.SystemId, system.DbName ?? new NpgsqlConnectionStringBuilder(options.Postgres.ConnectionString).Database ?? "",
                options.Postgres.Slot);
            session = new RelaySession(options, logger, metrics, status, connection, identity, memory, schemas) { _claim = claim };
            // Before the slot is looked at: whether a missing slot was lost is in the checkpoint, which is in Kafka.
            int brokers;
            try
            {
                brokers = await Task.Run(() => session._producer.CountBrokers(TimeSpan.FromSeconds(10)), ct);
            }
            catch (KafkaException) when (session._publisher.Failure.IsCompleted)
            {
                // The producer failed for good (e.g. refused its idempotence id): say that, not "unreachable".
                throw await session._publisher.Failure;
            }
            if (session._publisher.Failure.IsCompleted)
                throw await session._publisher.Failure;
            status.SetKafkaReachable(brokers > 0);
            await session.PrepareAsync(table, ct);
            return session;
        }
        catch
        {
            if (session is not null)
                await session.DisposeAsync();
            else
            {
                await connection.DisposeAsync();
                await claim.DisposeAsync();
            }
            throw;
        }
    }

    async Task PrepareAsync(OutboxTable? table, CancellationToken ct)
    {
        _slot = await OutboxSlot.EnsureSlotAsync(_options.Postgres, table, _connection, _identity, _checkpoints, _logger, ct);
        if (_slot.Gap is not null)
            _metrics.SlotRecreated();
        _lastCheckpoint = _slot.Checkpoint;
        _pendingRead = _slot.TableRead?.Pending;
        _status.OpenGapFrom = _pendingRead is null ? null : _pendingRead.From ?? DateTime.MinValue;
        var relations = _slot.Table is { } outbox
            ? new OutboxRelations(outbox, _options.Postgres.Columns, _logger, _format.Placements)
            : null;
        _reader = new SlotReader(_connection, _options.Postgres, relations);
        _confirmer = SlotConfirmer.For(_connection, _slot.ConfirmedLsn);
        _monitor = new SlotHealthMonitor(_options.Postgres, _slot.Table, _status, _logger);
        _status.ConfirmedLsn = _slot.ConfirmedLsn;
    }

    /// <summary>
    /// Whether this session got anywhere: it moved the slot, or streamed for longer than the longest backoff. Only
    /// then does the relay's backoff start over, so a failure that comes right after every start backs off for real.
    /// </summary>
    public bool MadeProgress =>
        _confirmer?.Advanced == true || (_streamingSince != 0 && Stopwatch.GetElapsedTime(_streamingSince) > _options.Relay.MaxRetryBackoff);

    /// <summary>
    /// Relays the table read the slot needs, then streams, until <paramref name="stopping"/> fires (then lets in-flight
    /// events be acknowledged, confirms, writes the checkpoint and returns) or until something fails (then confirms what
    /// was acknowledged and throws).
    /// </summary>
    public async Task RunAsync(CancellationToken stopping, Action? onStreaming = null)
    {
        using var readCancel = new CancellationTokenSource();
        using var confirmCancel = new CancellationTokenSource();
        var publishing = _publisher.RunAsync(readCancel.Token);
        var confirming = ConfirmLoopAsync(confirmCancel.Token);
        var monitoring = _monitor.RunAsync(readCancel.Token);
        using var lingerCancel = new CancellationTokenSource();
        var transacting = _transactions?.RunAsync(lingerCancel.Token) ?? Task.Delay(Timeout.Infinite, lingerCancel.Token);
        var read = ReadAsync(readCancel.Token);
        try
        {
            // START_REPLICATION fails at once when another reader holds the slot; only once the slot is this replica's is
            // this a stream. (A table read first is this replica's work already: it created the slot or found its read
            // unfinished, and starts replication after the read.)
            if (_slot.TableRead is null)
                await WaitUntilSlotHeldAsync(read, stopping);
            if (_transactions is not null)
                await StartExactlyOnceAsync(stopping);
            _ready.TrySetResult();
            _status.Streaming = true;
            _status.Standby = false;
            _streamingSince = Stopwatch.GetTimestamp();
            _metrics.StreamStarted();
            onStreaming?.Invoke();
            _logger.LogInformation("Streaming slot {Slot} (publication {Publication}, table {Table}, message prefix {Prefix})",
                _options.Postgres.Slot, _options.Postgres.Publication, _options.Postgres.OutboxTable?.ToString() ?? "none",
                _options.Postgres.MessagePrefix.Length > 0 ? _options.Postgres.MessagePrefix : "(messages off)");

            var stopped = Task.Delay(Timeout.Infinite, stopping);
            var first = await Task.WhenAny(read, stopped, _publisher.Failure, _monitor.Problem, transacting, publishing);

            // Stop taking new work; the watermark keeps following acknowledgements of what is in flight. Sealed first:
            // a confirm in between must not take a transaction the reader then skips for done.
            _tracker.Seal();
            _stopping = true;

            if (first == read)
                throw await StreamEndedAsync(read);
            if (first == transacting)
                await transacting; // a Kafka transaction could not commit: the session ends (the replay skips what is in Kafka)
            if (first == publishing)
                await publishing; // the publisher's loop (rewinds, topic checks) must not die unnoticed

            if (first == stopped)
            {
                var left = await _publisher.DrainAsync(_options.Relay.ShutdownTimeout);
                if (left > 0)
                    _logger.LogWarning("Stopping with {Count} events not acknowledged; they will be sent again after restart", left);
            }

            if (_transactions is not null && first == stopped)
            {
                // The reading loop takes no new work: the open Kafka transaction holds whole source transactions and is
                // committed, or one is half-read and it is aborted. The stream stays open for the last confirm.
                await lingerCancel.CancelAsync();
                await Quietly(transacting);
                await _transactions.CompleteAsync(TimeSpan.FromSeconds(2));
                await _publisher.DrainAsync(_options.Relay.ShutdownTimeout);
            }

            // One confirm at a time, and the last one after the loop's: the slot only ever moves forward.
            await confirmCancel.CancelAsync();
            await Quietly(confirming);
            await ConfirmAsync(CancellationToken.None);
            _logger.LogInformation("Confirmed slot {Slot} at {Lsn}", _options.Postgres.Slot, new NpgsqlLogSequenceNumber(_confirmer.Confirmed));
            if (_publisher.Failure.IsCompleted)
            {
                await _publisher.SettleAsync();
                throw await _publisher.FailureToThrowAsync();
            }
            if (_monitor.Problem.IsCompleted)
                throw await _monitor.Problem;
            await WriteLastCheckpointAsync();
        }
        finally
        {
            _status.Streaming = false;
            await confirmCancel.CancelAsync();
            await readCancel.CancelAsync();
            await lingerCancel.CancelAsync();
            await Quietly(read);
            await Quietly(publishing);
            await Quietly(confirming);
            await Quietly(monitoring);
            await Quietly(transacting);
            await Quietly(_checkpointWrite);
        }
    }

    /// <summary>
    /// Waits until the server shows this replication connection's walsender as the slot's reader (or START_REPLICATION
    /// failed: another reader holds it). Exactly once must not register its transactional id, fencing the leader, before.
    /// </summary>
    async Task WaitUntilSlotHeldAsync(Task read, CancellationToken ct)
    {
        await using var connection = new NpgsqlConnection(_options.Postgres.ConnectionString);
        await connection.OpenAsync(ct);
        await using var command = new NpgsqlCommand("SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", connection);
        command.Parameters.AddWithValue(_options.Postgres.Slot);
        var pid = _connection.ProcessID;
        var deadline = Stopwatch.GetTimestamp();
        while (true)
        {
            if (read.IsCompleted)
            {
                await read; // ObjectInUse: another reader holds the slot
                throw new NpgsqlException("PostgreSQL ended the replication stream before it started.");
            }
            if (await command.ExecuteScalarAsync(ct) is int active && active == pid)
                return;
            if (Stopwatch.GetElapsedTime(deadline) > TimeSpan.FromSeconds(30))
                throw new TimeoutException($"START_REPLICATION on slot {_options.Postgres.Slot} did not take the slot within 30 s");
            await Task.WhenAny(read, Task.Delay(20, ct));
        }
    }

    /// <summary>
    /// Exactly-once delivery, once this replica holds the slot: registers the transactional id (fencing a zombie and
    /// aborting its open transaction), then reads the checkpoint as Kafka committed it, below which every source
    /// transaction is already in Kafka and is skipped.
    /// </summary>
    async Task StartExactlyOnceAsync(CancellationToken ct)
    {
        await _transactions!.InitAsync(ct);
        var mine = (await _checkpoints.ReadAsync(_identity.Database, _identity.Slot, ct)).LastOrDefault(c => c.SystemId == _identity.SystemId);
        _skipBelow = mine?.ConfirmedLsn ?? 0;
        // The slot's start (where it was created, or confirmed) is a position Kafka has everything before, too.
        _transactions.StartAt(_identity.Checkpoint(Math.Max(_skipBelow, _slot.ConfirmedLsn), mine?.CommitTime ?? _slot.Checkpoint?.CommitTime,
            mine?.Pending));
        _logger.LogInformation("Exactly-once delivery as {TransactionalId}: source transactions committed before {Lsn} are in Kafka already",
            TransactionalId(_identity), new NpgsqlLogSequenceNumber(_skipBelow));
    }

    /// <summary>The whole path of an event: read from the slot, mapped, published; its transaction tracked for the confirm.</summary>
    async Task ReadAsync(CancellationToken ct)
    {
        if (_slot.TableRead is { } tableRead)
        {
            await _ready.Task.WaitAsync(ct);
            await RelayTableAsync(tableRead, ct);
        }

        PositionTracker.Transaction? transaction = null;
        var skipping = false;
        await foreach (var change in _reader.ReadAsync(ct))
        {
            await _ready.Task.WaitAsync(ct);
            if (_stopping)
                continue;
            switch (change.Kind)
            {
                case SlotChangeKind.Begin:
                    transaction = _tracker.Begin(change.Transaction.CommitTime);
                    // Exactly once: a source transaction committed to Kafka before a crash is not sent again.
                    skipping = _transactions is not null && change.Transaction.CommitLsn < _skipBelow;
                    if (transaction is not null && _transactions is not null && !skipping)
                        await _transactions.BeginSourceAsync(transaction, ct);
                    break;
                case SlotChangeKind.Row when transaction is not null && !skipping:
                    await PublishAsync(_mapper.Map(change.Row!, change.Transaction), transaction, change.Transaction.CommitTime, ct);
                    break;
                case SlotChangeKind.Message when transaction is not null && !skipping:
                    await PublishAsync(_mapper.Map(change.Message!, change.Transaction, change.Lsn), transaction, change.Transaction.CommitTime, ct);
                    break;
                case SlotChangeKind.Signal when transaction is not null && !skipping:
                    await RepublishAsync(change, transaction, ct);
                    break;
                case SlotChangeKind.Commit when transaction is not null:
                    if (_transactions is not null && !skipping)
                        await _transactions.EndSourceAsync(transaction, change.Lsn, change.Transaction.CommitTime);
                    else
                        _tracker.Commit(transaction, change.Lsn);
                    transaction = null;
                    skipping = false;
                    break;
            }
        }
    }

    /// <summary>Hands an event to the publisher within the in-flight bounds (and, exactly once, to an open topic).</summary>
    async Task PublishAsync(MappingResult mapped, PositionTracker.Transaction transaction, DateTime commitTime, CancellationToken ct)
    {
        await _tracker.WaitForRoomAsync(ct);
        if (_transactions is not null)
        {
            mapped = _publisher.AsRefused(mapped);
            var waiting = Stopwatch.GetTimestamp();
            await _publisher.WaitForTopicAsync((mapped.Record ?? mapped.DeadLetter!).Topic, ct);
            _transactions.Counted(Stopwatch.GetElapsedTime(waiting));
        }
        _publisher.Publish(mapped, transaction, commitTime);
    }

    /// <summary>
    /// Relays rows from the table before streaming (the initial snapshot, or a lost slot's gap), in the snapshot the
    /// slot's creation exported when there is one, as one tracked transaction at the slot's start: the slot is not
    /// confirmed past it until every row is acknowledged, and the checkpoint says it is pending until then.
    /// </summary>
    async Task RelayTableAsync(TableRead read, CancellationToken ct)
    {
        var started = DateTime.UtcNow;
        var origin = read.Kind == PendingTableRead.Snapshot ? Origin.Snapshot : Origin.Backfill;
        var transaction = _tracker.Begin(started) ?? throw new OperationCanceledException();
        _tableReadTransaction = transaction;
        await using var connection = new NpgsqlConnection(_options.Postgres.ConnectionString);
        await connection.OpenAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, ct);
        if (read.SnapshotName is { } snapshot)
        {
            // Exactly the rows committed before the slot's consistent point; the slot streams those after it.
            await using var set = new NpgsqlCommand($"SET TRANSACTION SNAPSHOT '{snapshot.Replace("'", "''")}'", connection, tx);
            await set.ExecuteNonQueryAsync(ct);
        }
        var reader = await OutboxTableReader.CreateAsync(connection, _slot.Table!, _options.Postgres.Columns, ct, _format.Placements);
        _logger.LogInformation("Relaying the {Kind} of {Table} from the table{From}", read.Kind, _slot.Table!.Name,
            read.From is { } from ? $" (created_at from {from:O})" : "");
        long rows = 0, counted = 0;
        var progressAt = Stopwatch.GetTimestamp();
        var kind = origin == Origin.Snapshot ? "snapshot" : "backfill";
        var inPart = 0;
        await foreach (var (row, _, _, _, _, _, _) in reader.ReadRangeAsync(connection, read.From, null, ct))
        {
            if (_transactions is not null && inPart == 0)
                await _transactions.BeginSourceAsync(transaction, ct);
            var info = new TransactionInfo(0, 0, row.CreatedAt ?? started, origin);
            await PublishAsync(_mapper.Map(row, info), transaction, started, ct);
            rows++;
            // Exactly once: a long read goes in several Kafka transactions (rows of the table are no source transaction).
            if (_transactions is not null && ++inPart >= _options.Relay.TransactionMaxEvents)
            {
                await _transactions.EndPartAsync();
                inPart = 0;
            }
            if (Stopwatch.GetElapsedTime(progressAt) > ProgressInterval)
            {
                _metrics.TableRowsRead(kind, rows - counted);
                counted = rows;
                progressAt = Stopwatch.GetTimestamp();
                _logger.LogInformation("The {Kind} of {Table} has handed {Rows} rows to Kafka so far", read.Kind, _slot.Table.Name, rows);
            }
        }
        await tx.CommitAsync(ct);
        if (_transactions is not null && inPart > 0)
            await _transactions.EndPartAsync();
        _metrics.TableRowsRead(kind, rows - counted);
        _tracker.Commit(transaction, _slot.ConfirmedLsn);
        _logger.LogInformation("The {Kind} of {Table} read {Rows} rows in {Seconds:F1} s; streaming from the slot", read.Kind,
            _slot.Table.Name, rows, (DateTime.UtcNow - started).TotalSeconds);
    }

    /// <summary>
    /// A re-publish signal: the rows it names are read from the table now and relayed again (origin REPUBLISH) as part
    /// of the signal's transaction, so the slot is not confirmed past the signal before they are acknowledged.
    /// </summary>
    async Task RepublishAsync(SlotChange change, PositionTracker.Transaction transaction, CancellationToken ct)
    {
        var signal = RepublishSignal.Parse(change.Message!, out var error);
        if (signal is null)
        {
            _logger.LogWarning("Skipping a malformed signal at {Lsn}: it {Error}", new NpgsqlLogSequenceNumber(change.Lsn), error);
            return;
        }
        if (signal.Slot != _options.Postgres.Slot)
        {
            _logger.LogDebug("Ignoring a signal for slot {Slot}", signal.Slot);
            return;
        }
        _logger.LogInformation("Re-publishing rows of {Table} ({Signal}), signalled at {Lsn}", _slot.Table!.Name, signal,
            new NpgsqlLogSequenceNumber(change.Lsn));
        await using var connection = new NpgsqlConnection(_options.Postgres.ConnectionString);
        await connection.OpenAsync(ct);
        var reader = await OutboxTableReader.CreateAsync(connection, _slot.Table, _options.Postgres.Columns, ct, _format.Placements);
        var rows = signal.Ids is { } ids
            ? reader.ReadIdsAsync(connection, ids, ct)
            : reader.ReadRangeAsync(connection, signal.From, signal.To, ct);
        long count = 0;
        await foreach (var (row, _, _, _, _, _, _) in rows)
        {
            var info = change.Transaction with { CommitLsn = 0, CommitTime = row.CreatedAt ?? change.Transaction.CommitTime, Origin = Origin.Republish };
            await PublishAsync(_mapper.Map(row, info), transaction, change.Transaction.CommitTime, ct);
            count++;
        }
        _metrics.TableRowsRead("republish", count);
        _logger.LogInformation("Re-published {Rows} rows of {Table}", count, _slot.Table.Name);
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
        if (await _confirmer.ConfirmAsync(confirmable, ct))
        {
            _status.ConfirmedLsn = _confirmer.Confirmed;
            if (_tracker.ConfirmableCommitTime is { } committed)
                _status.ConfirmedCommitTime = committed;
        }
        MaybeWriteCheckpoint();
    }

    /// <summary>
    /// The checkpoint as this session would write it now: the confirmed position, its commit time, and the table read
    /// if its rows are not all acknowledged yet.
    /// </summary>
    SlotCheckpoint CurrentCheckpoint()
    {
        NoticeTableReadDone();
        return _slot.Identity.Checkpoint(_confirmer.Confirmed, _status.ConfirmedCommitTime ?? _lastCheckpoint?.CommitTime, _pendingRead);
    }

    /// <summary>Once every row of the table read is acknowledged (committed, exactly once), it is no longer pending.</summary>
    void NoticeTableReadDone()
    {
        if (_pendingRead is not null && _tableReadTransaction is { } read && _tracker.IsAcknowledged(read))
        {
            _logger.LogInformation("Every row of the {Kind} is acknowledged", _pendingRead.Kind);
            _pendingRead = null;
            _status.OpenGapFrom = null;
        }
    }

    /// <summary>Writes the checkpoint in the background when it changed, at most once a second, one write at a time.</summary>
    void MaybeWriteCheckpoint()
    {
        NoticeTableReadDone();
        // Exactly once, the checkpoint goes in the Kafka transactions instead; one of its own when only the table read's
        // end changed it (a clean stop must not leave the read pending, to be done again at the next start).
        if (_transactions is not null)
        {
            if (ExactlyOnceCheckpointChanged())
                _transactions.CheckpointDue();
            return;
        }
        if (!_checkpointWrite.IsCompleted || Stopwatch.GetElapsedTime(_lastCheckpointAt) < CheckpointInterval)
            return;
        var checkpoint = CurrentCheckpoint();
        if (_lastCheckpoint is { } last && last with { WrittenAt = checkpoint.WrittenAt } == checkpoint)
            return;
        _lastCheckpointAt = Stopwatch.GetTimestamp();
        _checkpointWrite = WriteCheckpointAsync(checkpoint);
    }

    async Task WriteCheckpointAsync(SlotCheckpoint checkpoint)
    {
        try
        {
            await _checkpoints.WriteAsync(checkpoint, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10));
            _lastCheckpoint = checkpoint;
            if (_memory.CheckpointFailing)
                _logger.LogInformation("The checkpoint of slot {Slot} is written to {Topic} again ({Checkpoint})", _identity.Slot,
                    _options.Kafka.CheckpointTopic, checkpoint);
            _memory.CheckpointFailing = false;
        }
        catch (Exception e)
        {
            // Without its checkpoint the connector cannot tell a lost slot from a first start: the operator must know.
            if (!_memory.CheckpointFailing)
                _logger.LogWarning("Could not write the checkpoint of slot {Slot} to {Topic} ({Reason}); until it is written, a lost slot " +
                                   "would look like a first start. Writing it again every second", _identity.Slot, _options.Kafka.CheckpointTopic,
                    e.Message);
            else
                _logger.LogDebug("Could not write the checkpoint ({Reason}); writing it again later", e.Message);
            _memory.CheckpointFailing = true;
        }
    }

    bool ExactlyOnceCheckpointChanged() =>
        _transactions!.CommittedCheckpoint is { } committed && committed.Pending != _pendingRead;

    /// <summary>At a stop: the last checkpoint, after the last confirm.</summary>
    async Task WriteLastCheckpointAsync()
    {
        await Quietly(_checkpointWrite);
        if (_transactions is not null)
        {
            NoticeTableReadDone();
            if (!ExactlyOnceCheckpointChanged())
                return;
            try
            {
                _transactions.CheckpointDue();
                await _transactions.CompleteAsync(TimeSpan.FromSeconds(2));
            }
            catch (Exception e)
            {
                _logger.LogWarning("Could not commit the last checkpoint of slot {Slot} to {Topic} ({Reason}); the next start may relay " +
                                   "the {Kind} again", _identity.Slot, _options.Kafka.CheckpointTopic, e.Message, _transactions.CommittedCheckpoint?.Pending?.Kind);
            }
            return;
        }
        var checkpoint = CurrentCheckpoint();
        if (_lastCheckpoint is { } last && last with { WrittenAt = checkpoint.WrittenAt } == checkpoint)
            return;
        _checkpointWrite = WriteCheckpointAsync(checkpoint);
        await _checkpointWrite;
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
        _transactions?.Dispose();
        if (_plainProducer.IsValueCreated)
            _plainProducer.Value.Dispose();
        await _connection.DisposeAsync();
        if (_claim is not null)
            await _claim.DisposeAsync(); // after the replication connection: a standby takes over once both are gone
    }
}
