using System.Diagnostics;
using Cdc.Contracts;
using Cdc.Outbox.V1;
using Confluent.Kafka;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Cdc.Consumer;

/// <summary>
/// Consumes outbox topics in a consumer group and runs the handler once per event id: each event is processed in one
/// database transaction together with its inbox entry (<see cref="InboxProcessor"/>), and its Kafka offset is committed
/// only after that transaction committed. A handler that throws is retried with exponential backoff and, after
/// <see cref="OutboxConsumerOptions.MaxAttempts"/>, the event goes to the dead-letter topic and the partition moves on.
/// A database that is unreachable is waited for instead: its failures do not use up an event's attempts.
/// </summary>
public sealed class OutboxConsumerService : BackgroundService
{
    /// <summary>Source of the "process" spans, children of the writer's trace when the event carries a <c>traceparent</c>.</summary>
    public static readonly ActivitySource ActivitySource = new("Cdc.Consumer");

    static readonly TimeSpan PollTimeout = TimeSpan.FromMilliseconds(200);

    readonly OutboxConsumerOptions _options;
    readonly NpgsqlDataSource _dataSource;
    readonly Func<OutboxEvent, NpgsqlTransaction, CancellationToken, Task> _handler;
    readonly ILogger _logger;
    readonly InboxProcessor _processor;
    readonly ProcessedOffsets _offsets = new();
    readonly CancellationTokenSource _abandon = new();
    volatile bool _abandoned;
    int _databaseFailures;
    ErrorCode _lastConsumeError = ErrorCode.NoError;

    /// <param name="handler">
    /// Runs for each new event with the open transaction; write through it, and it commits with the inbox entry.
    /// Throwing rolls both back and counts as a failed attempt.
    /// </param>
    public OutboxConsumerService(
        OutboxConsumerOptions options,
        NpgsqlDataSource dataSource,
        Func<OutboxEvent, NpgsqlTransaction, CancellationToken, Task> handler,
        ILogger<OutboxConsumerService> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _dataSource = dataSource ?? throw new ArgumentNullException(nameof(dataSource));
        _handler = handler ?? throw new ArgumentNullException(nameof(handler));
        _logger = logger ?? throw new ArgumentNullException(nameof(logger));
        _processor = new InboxProcessor(dataSource, new Inbox(options.EffectiveConsumerName, options.InboxTable));
    }

    public OutboxConsumerStatus Status { get; } = new();

    // The Kafka client blocks in Consume: keep it off the host's startup path.
    protected override Task ExecuteAsync(CancellationToken stoppingToken) => Task.Run(() => ConsumeAsync(stoppingToken), CancellationToken.None);

    async Task ConsumeAsync(CancellationToken stoppingToken)
    {
        using var running = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken, _abandon.Token);
        var ct = running.Token;
        using var deadLetters = new DeadLetterProducer(_options);
        var consumer = BuildConsumer();
        var purge = PurgeInboxAsync(ct);
        try
        {
            consumer.Subscribe(_options.Topics);
            _logger.LogInformation("Consuming {Topics} in group {GroupId} (inbox {InboxTable} as {Consumer})",
                string.Join(",", _options.Topics), _options.GroupId, _options.InboxTable, _options.EffectiveConsumerName);
            var nextCommit = DateTime.UtcNow + _options.CommitInterval;
            while (!ct.IsCancellationRequested)
            {
                if (await PollAsync(consumer, deadLetters, ct) is { } result)
                {
                    if (await HandleAsync(result, deadLetters, ct))
                        _offsets.MarkDone(result.TopicPartitionOffset);
                    else
                        consumer.Seek(result.TopicPartitionOffset); // not done: read it again after the backoff
                }
                if (DateTime.UtcNow >= nextCommit)
                {
                    Commit(consumer, null);
                    nextCommit = DateTime.UtcNow + _options.CommitInterval;
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
        finally
        {
            if (_abandoned)
            {
                // As a crash: what was processed but not committed to Kafka is delivered again, and the inbox skips it.
                consumer.Dispose();
                _logger.LogWarning("Consumer {GroupId} abandoned without committing offsets", _options.GroupId);
            }
            else
            {
                Commit(consumer, null);
                try
                {
                    consumer.Close(); // leaves the group now instead of after session.timeout.ms
                }
                catch (KafkaException e)
                {
                    _logger.LogDebug(e, "Closing the consumer");
                }
                consumer.Dispose();
                _logger.LogInformation("Consumer {GroupId} stopped; offsets committed", _options.GroupId);
            }
            await Quietly(purge);
        }
    }

    /// <summary>The next record, or null (none yet, or one that was not an OutboxEvent and went to the dead-letter topic).</summary>
    async Task<ConsumeResult<Ignore, OutboxEvent>?> PollAsync(IConsumer<Ignore, OutboxEvent> consumer, DeadLetterProducer deadLetters, CancellationToken ct)
    {
        try
        {
            var result = consumer.Consume(PollTimeout);
            _lastConsumeError = ErrorCode.NoError;
            return result;
        }
        catch (ConsumeException e) when (e.Error.Code == ErrorCode.Local_ValueDeserialization)
        {
            var record = e.ConsumerRecord;
            var reason = e.InnerException?.Message ?? e.Error.Reason;
            try
            {
                await deadLetters.SendUnreadableAsync(record, reason, ct);
                Status.OnDeadLettered();
                _offsets.MarkDone(record.TopicPartitionOffset);
                _logger.LogError("Record {Topic} [{Partition}] @{Offset} is not an OutboxEvent ({Reason}); sent to {DeadLetterTopic}",
                    record.Topic, record.Partition.Value, record.Offset.Value, reason, _options.DeadLetterTopic);
            }
            catch (Exception sendError) when (sendError is not OperationCanceledException)
            {
                _logger.LogWarning(sendError, "Could not dead-letter unreadable record {Topic} [{Partition}] @{Offset}; retrying",
                    record.Topic, record.Partition.Value, record.Offset.Value);
                consumer.Seek(record.TopicPartitionOffset);
                await Task.Delay(_options.InitialBackoff, ct);
            }
            return null;
        }
        catch (ConsumeException e) when (!e.Error.IsFatal)
        {
            // e.g. a topic that does not exist yet: reported on every poll, logged once.
            if (e.Error.Code != _lastConsumeError)
                _logger.LogWarning("Consumer {GroupId}: {Reason} ({Code})", _options.GroupId, e.Error.Reason, e.Error.Code);
            _lastConsumeError = e.Error.Code;
            await Task.Delay(PollTimeout, ct);
            return null;
        }
    }

    /// <summary>Processes one event with retries; true when it is done with (processed, duplicate or dead-lettered).</summary>
    async Task<bool> HandleAsync(ConsumeResult<Ignore, OutboxEvent> result, DeadLetterProducer deadLetters, CancellationToken ct)
    {
        var evt = result.Message.Value;
        var eventId = result.EventId();
        using var activity = StartActivity(result, evt, eventId);
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                var outcome = await _processor.ProcessAsync(eventId, (tx, token) => _handler(evt, tx, token), ct);
                if (_databaseFailures > 0)
                    _logger.LogInformation("Consumer {GroupId}: the database answers again", _options.GroupId);
                _databaseFailures = 0;
                if (outcome == InboxOutcome.Duplicate)
                {
                    Status.OnDuplicate();
                    _logger.LogDebug("Skipped event {OutboxEventId} ({EventType}) from {Topic} [{Partition}] @{Offset}: already processed",
                        eventId, evt.EventType, result.Topic, result.Partition.Value, result.Offset.Value);
                }
                else
                {
                    Status.OnProcessed();
                }
                activity?.SetTag("cdc.inbox.outcome", outcome.ToString());
                return true;
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                throw;
            }
            catch (Exception e) when (IsDatabaseUnavailable(e))
            {
                // Not the handler's fault: no attempt is used up, and polling goes on meanwhile so the group keeps us.
                var delay = RetryBackoff.Delay(++_databaseFailures, _options.InitialBackoff, _options.MaxBackoff);
                if (_databaseFailures == 1)
                    _logger.LogWarning("Consumer {GroupId}: database unavailable ({Message}); event {OutboxEventId} will be retried, backing off up to {MaxBackoff}",
                        _options.GroupId, e.Message, eventId, _options.MaxBackoff);
                await Task.Delay(delay, ct);
                return false;
            }
            catch (Exception e)
            {
                Status.OnHandlerFailure();
                if (attempt >= _options.MaxAttempts)
                    return await DeadLetterAsync(result, eventId, e, attempt, deadLetters, ct);
                var delay = RetryBackoff.Delay(attempt, _options.InitialBackoff, _options.MaxBackoff);
                _logger.LogWarning(e, "Handler failed on event {OutboxEventId} ({EventType}), attempt {Attempt} of {MaxAttempts}; retrying in {Delay}",
                    eventId, evt.EventType, attempt, _options.MaxAttempts, delay);
                await Task.Delay(delay, ct);
            }
        }
    }

    async Task<bool> DeadLetterAsync(
        ConsumeResult<Ignore, OutboxEvent> result, string eventId, Exception error, int attempts, DeadLetterProducer deadLetters, CancellationToken ct)
    {
        try
        {
            await deadLetters.SendAsync(result, eventId, error, attempts, ct);
        }
        catch (Exception sendError) when (sendError is not OperationCanceledException)
        {
            _logger.LogWarning(sendError, "Could not dead-letter event {OutboxEventId}; it will be tried again", eventId);
            await Task.Delay(_options.MaxBackoff, ct);
            return false;
        }
        Status.OnDeadLettered();
        _logger.LogError(error, "Event {OutboxEventId} ({EventType}) from {Topic} [{Partition}] @{Offset} failed {Attempts} times; sent to {DeadLetterTopic}",
            eventId, result.Message.Value.EventType, result.Topic, result.Partition.Value, result.Offset.Value, attempts, _options.DeadLetterTopic);
        return true;
    }

    static bool IsDatabaseUnavailable(Exception e) => e is NpgsqlException { IsTransient: true };

    void Commit(IConsumer<Ignore, OutboxEvent> consumer, IEnumerable<TopicPartition>? partitions)
    {
        var offsets = _offsets.Take(partitions);
        if (offsets.Count == 0)
            return;
        try
        {
            consumer.Commit(offsets);
            Status.OnCommitted();
        }
        catch (KafkaException e)
        {
            // Dropped on purpose: committing them later could move a partition back after a rebalance.
            _logger.LogWarning("Consumer {GroupId} could not commit offsets ({Reason}); those events will be delivered again and skipped by the inbox",
                _options.GroupId, e.Error.Reason);
        }
    }

    IConsumer<Ignore, OutboxEvent> BuildConsumer()
    {
        var config = new ConsumerConfig
        {
            BootstrapServers = _options.BootstrapServers,
            GroupId = _options.GroupId,
            ClientId = $"cdc-consumer-{_options.EffectiveConsumerName}",
            // A new group starts at the beginning: events written before it first ran are not skipped.
            AutoOffsetReset = AutoOffsetReset.Earliest,
            // With the connector's exactly-once delivery, each source transaction is seen whole or not at all, and an
            // aborted one never. (librdkafka's default too; said here because the guarantee depends on it.)
            IsolationLevel = IsolationLevel.ReadCommitted,
        };
        foreach (var (key, value) in _options.Consumer)
            config.Set(key, value);
        // Offsets are committed by this service only, after the database commit (validation keeps users from overriding).
        config.EnableAutoCommit = false;
        config.EnableAutoOffsetStore = false;

        return new ConsumerBuilder<Ignore, OutboxEvent>(config)
            .SetValueDeserializer(OutboxEventDeserializer.Instance)
            .SetPartitionsAssignedHandler((_, partitions) =>
            {
                Status.OnAssigned(partitions.Count);
                _logger.LogInformation("Consumer {GroupId} assigned {Partitions}", _options.GroupId, Describe(partitions));
            })
            .SetPartitionsRevokedHandler((consumer, partitions) =>
            {
                Status.OnRevoked(partitions.Count);
                if (_abandoned)
                    return;
                // Last chance to commit what this instance processed before another one takes the partitions.
                Commit(consumer, partitions.Select(p => p.TopicPartition));
                _logger.LogInformation("Consumer {GroupId} revoked {Partitions}", _options.GroupId, Describe(partitions.Select(p => p.TopicPartition)));
            })
            .SetPartitionsLostHandler((_, partitions) =>
            {
                Status.OnRevoked(partitions.Count);
                _offsets.Forget(partitions.Select(p => p.TopicPartition));
                _logger.LogWarning("Consumer {GroupId} lost {Partitions}; their uncommitted events will be delivered again", _options.GroupId,
                    Describe(partitions.Select(p => p.TopicPartition)));
            })
            .SetErrorHandler((_, error) =>
            {
                if (error.IsFatal)
                    _logger.LogError("Consumer {GroupId} fatal error: {Reason} ({Code})", _options.GroupId, error.Reason, error.Code);
                else
                    _logger.LogDebug("Consumer {GroupId}: {Reason} ({Code})", _options.GroupId, error.Reason, error.Code);
            })
            .SetLogHandler((_, message) => _logger.LogDebug("librdkafka {Facility}: {Message}", message.Facility, message.Message))
            .Build();
    }

    static string Describe(IEnumerable<TopicPartition> partitions) =>
        string.Join(",", partitions.GroupBy(p => p.Topic).Select(g => $"{g.Key}[{string.Join(",", g.Select(p => p.Partition.Value))}]"));

    static Activity? StartActivity(ConsumeResult<Ignore, OutboxEvent> result, OutboxEvent evt, string eventId)
    {
        if (!ActivitySource.HasListeners())
            return null;
        evt.Headers.TryGetValue(HeaderNames.TraceParent, out var traceParent);
        evt.Headers.TryGetValue(HeaderNames.TraceState, out var traceState);
        ActivityContext.TryParse(traceParent, traceState, out var parent);
        return ActivitySource.StartActivity($"{result.Topic} process", ActivityKind.Consumer, parent)?
            .SetTag("messaging.system", "kafka")
            .SetTag("messaging.operation.type", "process")
            .SetTag("messaging.destination.name", result.Topic)
            .SetTag("messaging.destination.partition.id", result.Partition.Value)
            .SetTag("messaging.kafka.offset", result.Offset.Value)
            .SetTag("messaging.message.id", eventId)
            .SetTag("cdc.event_type", evt.EventType);
    }

    async Task PurgeInboxAsync(CancellationToken ct)
    {
        if (_options.InboxPurgeInterval == TimeSpan.Zero)
            return;
        using var timer = new PeriodicTimer(_options.InboxPurgeInterval);
        do
        {
            try
            {
                var deleted = await _processor.Inbox.PurgeAsync(_dataSource, _options.InboxRetention, ct);
                if (deleted > 0)
                    _logger.LogInformation("Inbox {InboxTable}: deleted {Count} entries of {Consumer} older than {Retention}",
                        _options.InboxTable, deleted, _options.EffectiveConsumerName, _options.InboxRetention);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                _logger.LogWarning(e, "Inbox cleanup failed; trying again in {Interval}", _options.InboxPurgeInterval);
            }
        } while (await timer.WaitForNextTickAsync(ct));
    }

    /// <summary>
    /// Stops as a crash would (for tests): no offset commit, no leaving the group. Events processed since the last
    /// commit are delivered again to whoever takes the partitions, and the inbox skips them.
    /// </summary>
    internal async Task AbandonAsync()
    {
        _abandoned = true;
        await _abandon.CancelAsync();
        if (ExecuteTask is { } running)
            await Quietly(running);
    }

    static async Task Quietly(Task task)
    {
        try
        {
            await task;
        }
        catch (OperationCanceledException)
        {
        }
    }
}
