using System.Collections.Concurrent;
using System.Diagnostics;
using Cdc.Configuration;
using Cdc.Mapping;
using Cdc.Positions;
using Cdc.Relay;
using Cdc.Replication;
using Cdc.Telemetry;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;

namespace Cdc.Publishing;

/// <summary>A delivery failed in a way a new stream and producer can fix; the session ends and the relay resumes from the slot.</summary>
public sealed class DeliveryFailedException(string message) : Exception(message);

/// <summary>
/// Takes mapped events in read order and sees each through to an acknowledgement of it or of its dead letter; the
/// tracker hears of every one. Records go to the producer while all is well; the first record that fails stops that:
/// the producer is purged at once (nothing produced after the failed record can reach Kafka before it), new events wait,
/// and once every record handed over has been reported the failed ones are resolved in read order:
/// <list type="bullet">
/// <item>taken back by the purge: sent again;</item>
/// <item>refused with its batch (too large as a batch, another record invalid): sent again alone, and judged alone;</item>
/// <item>too large alone or invalid: its dead letter is sent (smaller forms when that is refused too; if even the
/// smallest is refused, the worker stops rather than skip it);</item>
/// <item>its topic does not exist: the topic's events wait in its <see cref="TopicGate"/> (the rest goes on) until
/// the topic exists or is created.</item>
/// </list>
/// With a Schema Registry, a topic's gate opens only once its schema id is known too (<see cref="IValueSchemas"/>): while
/// the registry is unreachable or refuses the subject, the topic's events wait the same way, and each record handed to the
/// producer carries its topic's framing prefix.
/// Connection and cluster failures end the session (<see cref="Failure"/>); the relay resumes from the slot.
/// Nothing here blocks or produces on the producer's delivery thread.
/// </summary>
public sealed class EventPublisher : IDeliveryReports, IDisposable
{
    static readonly TimeSpan FirstTopicCheckBackoff = TimeSpan.FromSeconds(1);
    static readonly TimeSpan ProbeInterval = TimeSpan.FromSeconds(2);
    long _lastProbe;
    static readonly TimeSpan MaxTopicCheckBackoff = TimeSpan.FromSeconds(30);

    readonly IRecordProducer _producer;
    readonly ITopicAdmin _admin;
    readonly OutboxEventMapper _mapper;
    readonly PositionTracker _tracker;
    readonly CdcMetrics _metrics;
    readonly RelayStatus _status;
    readonly ILogger _logger;
    readonly ConcurrentDictionary<string, byte> _knownTopics;
    readonly ConcurrentDictionary<string, Refusal>? _refusals;
    readonly bool _transactional;
    readonly IValueSchemas? _schemas;

    readonly Lock _gate = new();
    readonly Dictionary<string, TopicGate> _topics = new(StringComparer.Ordinal);
    readonly List<PendingEvent> _failed = [];
    readonly List<PendingEvent> _paused = [];
    readonly SemaphoreSlim _wake = new(0);
    readonly TaskCompletionSource<Exception> _failure = new(TaskCreationOptions.RunContinuationsAsynchronously);
    long _sequence;
    int _outstanding;
    bool _rewinding;
    bool _queueFullLogged;
    bool _producerFailed;
    volatile CdcStartupException? _stop;

    /// <param name="createProducer">Builds the producer that reports to this publisher.</param>
    /// <param name="knownTopics">Topics known to exist (kept across sessions, so each is asked about once per process).</param>
    /// <param name="schemas">The Schema Registry's ids of the topics' value schemas; null: values are not framed.</param>
    /// <param name="refusals">
    /// What Kafka refused of which event, kept across sessions: a session can end because of a refusal (a batch refused
    /// for good makes the producer fatal; with exactly-once delivery the Kafka transaction aborts), and the replay must
    /// send the event as what it became (alone, or its dead letter) instead of refusing it again forever.
    /// </param>
    /// <param name="transactional">Exactly-once delivery: a refused record ends the session (no rewind inside a transaction).</param>
    public EventPublisher(
        Func<IDeliveryReports, IRecordProducer> createProducer, Func<IRecordProducer, ITopicAdmin> createAdmin,
        OutboxEventMapper mapper, PositionTracker tracker, CdcMetrics metrics, RelayStatus status, ILogger logger,
        ConcurrentDictionary<string, byte> knownTopics, IValueSchemas? schemas = null, ConcurrentDictionary<string, Refusal>? refusals = null,
        bool transactional = false)
    {
        _schemas = schemas;
        _refusals = refusals;
        _transactional = transactional;
        _mapper = mapper;
        _tracker = tracker;
        _metrics = metrics;
        _status = status;
        _logger = logger;
        _knownTopics = knownTopics;
        _producer = createProducer(this);
        _admin = createAdmin(_producer);
    }

    /// <summary>Completes with the first failure that ends the session (retry from the slot) or the worker (fatal).</summary>
    public Task<Exception> Failure => _failure.Task;

    /// <summary>Records handed to the producer and not yet reported.</summary>
    public int Outstanding => Volatile.Read(ref _outstanding);

    /// <summary>
    /// Takes a mapped event (or a row's dead letter) of <paramref name="transaction"/>. Counts it in the tracker first, so
    /// its acknowledgement cannot come before it is counted. Called by the reading loop only, in read order.
    /// </summary>
    public void Publish(MappingResult mapped, PositionTracker.Transaction transaction, DateTime commitTime)
    {
        var record = mapped.Record ?? mapped.DeadLetter!;
        var pending = new PendingEvent(++_sequence, record, transaction, record.Value.Length + record.Key.Length, commitTime);
        if (mapped.IsDeadLetter)
        {
            pending.DeadLetter = DeadLetterForm.Whole;
            pending.DeadLetterReason = mapped.DeadLetterReason;
        }
        else
        {
            pending.Activity = OutboxTracing.StartSend(record);
        }
        _tracker.Add(transaction, pending.Bytes);
        // TryGetValue, not IsEmpty first: IsEmpty takes every lock of the dictionary when it is empty (the usual case).
        if (!_transactional && _refusals is not null && _refusals.TryGetValue(pending.Event.EventId, out var refusal))
        {
            // Refused in an earlier session: sent as what it became, and alone (through a rewind: nothing else in the
            // producer) when it was refused with its batch.
            pending.Error = new Error(ErrorCode.MsgSizeTooLarge, refusal.Error);
            if (refusal.Form is { } form)
            {
                pending.DeadLetter = form;
                pending.DeadLetterReason = refusal.Reason;
                pending.DeadLetterError = form == DeadLetterForm.Whole && _mapper.DeadLetterError(pending.Event) is null
                    ? refusal.Error
                    : (_mapper.DeadLetterError(pending.Event) is { } first && !refusal.Error.StartsWith(first, StringComparison.Ordinal)
                        ? first + "; " : "") + refusal.Error;
                pending.Record = _mapper.DeadLetter(pending.Event, pending.DeadLetterError, form);
            }
            if (refusal.Alone)
            {
                pending.Outcome = DeliveryOutcome.RetryAlone;
                lock (_gate)
                {
                    _rewinding = true;
                    _failed.Add(pending);
                }
                Wake();
                return;
            }
        }
        lock (_gate)
        {
            if (_rewinding)
                _paused.Add(pending);
            else
                Route(pending);
        }
    }

    /// <summary>Produces the event, or lets it wait for its topic. Under the lock.</summary>
    void Route(PendingEvent pending)
    {
        var topic = Gate(pending.Record.Topic);
        if (topic.Passes)
            Produce(pending, topic);
        else
            Wait(topic, pending);
    }

    TopicGate Gate(string topic)
    {
        if (_topics.TryGetValue(topic, out var gate))
            return gate;
        byte[]? prefix = null;
        var known = _knownTopics.ContainsKey(topic) && (_schemas is null || _schemas.TryGetCached(topic, out prefix));
        gate = new TopicGate(topic, known ? TopicStatus.Open : TopicStatus.Unchecked) { CheckBackoff = FirstTopicCheckBackoff, ValuePrefix = prefix };
        _topics[topic] = gate;
        if (!known)
            Wake();
        return gate;
    }

    static void Wait(TopicGate topic, PendingEvent pending)
    {
        // Oldest first: an event sent back by a rewind may be older than ones already waiting.
        if (topic.Waiting.Count == 0 || topic.Waiting.Last().Sequence < pending.Sequence)
        {
            topic.Waiting.Enqueue(pending);
            return;
        }
        var all = topic.Waiting.Append(pending).OrderBy(p => p.Sequence).ToList();
        topic.Waiting.Clear();
        foreach (var p in all)
            topic.Waiting.Enqueue(p);
    }

    /// <summary>Hands the record to the producer. Under the lock, so that a failure report cannot pass it unnoticed.</summary>
    void Produce(PendingEvent pending, TopicGate topic)
    {
        pending.ValuePrefix = topic.ValuePrefix;
        Interlocked.Increment(ref _outstanding);
        pending.ProducedAt = Stopwatch.GetTimestamp();
        try
        {
            _producer.Produce(pending);
        }
        catch (ProduceException<byte[], byte[]> e)
        {
            // Refused at once (too large for the producer, topic known to be missing, queue full): the same path as a
            // report. A refusal at once is about this record alone: it was never in a batch.
            pending.Alone = true;
            Delivered(pending, e.Error);
        }
    }

    /// <inheritdoc />
    public void Delivered(PendingEvent pending, Error error)
    {
        try
        {
            var outcome = error.Code == ErrorCode.Local_QueueFull
                ? DeliveryOutcome.Purged
                : DeliveryErrors.Classify(error.Code, pending.Alone);
            if (outcome == DeliveryOutcome.Acknowledged)
                Acknowledged(pending);
            else
                Failed(pending, error, outcome);
            // After the failure is recorded: a rewind starts only once every report is in, and must find this one.
            Interlocked.Decrement(ref _outstanding);
            if (pending.Awaiter is { } awaiter)
                awaiter.TrySetResult(outcome);
            else if (_rewinding && Outstanding == 0)
                Wake();
        }
        catch (Exception e)
        {
            // Never into librdkafka: a handler that throws would leave the event unacknowledged and unnoticed.
            Fail(new DeliveryFailedException($"Handling a delivery report failed: {e}"));
        }
    }

    void Acknowledged(PendingEvent pending)
    {
        if (_refusals is not null && _refusals.ContainsKey(pending.Event.EventId))
            _refusals.TryRemove(pending.Event.EventId, out _);
        _tracker.Acknowledge(pending.Transaction, pending.Bytes);
        OutboxTracing.Stop(pending.Activity, pending.DeadLetter is null ? null : pending.DeadLetterError);
        if (pending.DeadLetter is null)
            _metrics.Published(pending.Record.Topic, (DateTime.UtcNow - pending.CommitTime).TotalSeconds,
                Stopwatch.GetElapsedTime(pending.ProducedAt).TotalSeconds);
        else
            _metrics.DeadLettered(pending.DeadLetterReason ?? "rejected");
        if (_status.SetKafkaReachable(true))
            _logger.LogInformation("Kafka acknowledges events again");
    }

    void Failed(PendingEvent pending, Error error, DeliveryOutcome outcome)
    {
        pending.Error = error;
        pending.Outcome = outcome;
        if (outcome is DeliveryOutcome.Retry or DeliveryOutcome.Fatal)
        {
            _metrics.DeliveryFailed(pending.Record.Topic);
            _status.SetKafkaReachable(false);
            if (outcome == DeliveryOutcome.Fatal)
                // Outranks the failure the producer may have reported first (a refused batch makes it fatal, gapless).
                Stop(new CdcStartupException($"Kafka refused to take events on {pending.Record.Topic}: {error.Code} ({error.Reason}). " +
                                             "Check the producer's credentials, ACLs and Cdc:Kafka:Producer settings."));
            else
                Fail(new DeliveryFailedException($"Delivery to {pending.Record.Topic} failed: {error.Code} ({error.Reason})"));
            return;
        }
        if (error.Code == ErrorCode.Local_QueueFull && !_queueFullLogged)
        {
            _queueFullLogged = true;
            _logger.LogWarning("The producer's queue is full (queue.buffering.max.messages/kbytes); records wait for room. " +
                               "Lower Cdc:Relay:MaxInFlightEvents/MaxInFlightBytes or raise the producer's queue");
        }
        if (pending.DeadLetter == DeadLetterForm.HeadersOnly && outcome is DeliveryOutcome.TooLarge or DeliveryOutcome.Rejected)
        {
            // The smallest dead letter, refused alone: nothing is left to try. This stop outranks a failure the producer
            // reported first (a refused batch makes it fatal), which would only replay the same refusal.
            Stop(new CdcStartupException(
                $"Kafka refused the dead letter of event {pending.Event.EventId} even as key and headers only on {pending.Record.Topic}: " +
                $"{error.Code} ({error.Reason}). Stopping rather than skipping the event; check Cdc:Kafka:DeadLetterTopic and the " +
                "topic's max.message.bytes"));
            return;
        }
        if (pending.Awaiter is not null)
        {
            // The rewind waits for this one and resolves it itself; remembered too, in case the session ends first.
            if (!_transactional)
                Remember(pending, error, outcome);
            return;
        }
        if (_transactional)
        {
            RefusedInTransaction(pending, error, outcome);
            return;
        }
        Remember(pending, error, outcome);
        lock (_gate)
        {
            _rewinding = true;
            // Also while resolving earlier failures: records sent again after this one must not pass it. A purged
            // record needs no purge of its own (the purge that took it back took the rest too).
            if (outcome != DeliveryOutcome.Purged)
                _producer.Purge();
            _failed.Add(pending);
        }
        Wake();
    }

    /// <summary>
    /// Exactly-once delivery: remembers what the refused record must become when its transaction is replayed (sent again
    /// as it is once after a refusal with its batch, else its dead letter, in smaller forms while those are refused
    /// too), and ends the session, which aborts the Kafka transaction.
    /// </summary>
    void RefusedInTransaction(PendingEvent pending, Error error, DeliveryOutcome outcome)
    {
        if (outcome == DeliveryOutcome.Purged)
            return; // taken back because the session is ending already
        var id = pending.Event.EventId;
        var previous = _refusals!.GetValueOrDefault(id);
        var reason = $"Kafka refused the record on {pending.Event.Topic}: {error.Code} ({error.Reason})";
        Refusal next;
        if (outcome == DeliveryOutcome.UnknownTopic)
        {
            // Its topic is asked about again before the replay sends to it.
            lock (_gate)
                if (_topics.TryGetValue(pending.Record.Topic, out var topic))
                    topic.Status = TopicStatus.Unchecked;
            _knownTopics.TryRemove(pending.Record.Topic, out _);
            Fail(new DeliveryFailedException($"Topic {pending.Record.Topic} is unknown to Kafka; the Kafka transaction is aborted and replayed"));
            return;
        }
        if (pending.DeadLetter is { } mapped)
        {
            // The form that was sent: the mapper's dead letter, or a smaller one a refusal made it.
            var form = previous?.Form is { } sent && sent > mapped ? sent : mapped;
            if (form == DeadLetterForm.HeadersOnly)
            {
                Fail(new CdcStartupException(
                    $"Kafka refused the dead letter of event {id} even as key and headers only on {pending.Record.Topic}: {error.Code} " +
                    $"({error.Reason}). Stopping rather than skipping the event; check Cdc:Kafka:DeadLetterTopic and the topic's max.message.bytes"));
                return;
            }
            next = new Refusal(form + 1, false, previous?.Error ?? reason, pending.DeadLetterReason ?? "rejected");
        }
        else if (outcome == DeliveryOutcome.RetryAlone && previous is null)
            next = new Refusal(null, false, reason, "too_large"); // sent again as it is, once
        else
            next = new Refusal(outcome == DeliveryOutcome.Rejected ? DeadLetterForm.Whole : DeadLetterForm.WithoutPayload, false, reason,
                outcome == DeliveryOutcome.Rejected ? "rejected" : "too_large");
        _refusals![id] = next;
        Fail(new DeliveryFailedException($"{reason}; the Kafka transaction is aborted and replayed with the event " +
                                         (next.Form is { } f ? $"dead-lettered ({Describe(f)})" : "sent again")));
    }

    /// <summary>
    /// Remembers a refusal the rewind is about to resolve, for the replay if the session ends first (a refused batch
    /// makes the producer fatal): the event is then sent alone, or as its dead letter.
    /// </summary>
    void Remember(PendingEvent pending, Error error, DeliveryOutcome outcome)
    {
        if (_refusals is null || outcome is not (DeliveryOutcome.RetryAlone or DeliveryOutcome.TooLarge or DeliveryOutcome.Rejected))
            return;
        var reason = $"Kafka refused the record on {pending.Event.Topic}: {error.Code} ({error.Reason})";
        var id = pending.Event.EventId;
        var reasonCategory = pending.DeadLetterReason ?? (outcome == DeliveryOutcome.Rejected ? "rejected" : "too_large");
        _refusals[id] = outcome switch
        {
            // Refused with its batch: the same record again, alone (never a step back to a larger form).
            DeliveryOutcome.RetryAlone => new Refusal(pending.DeadLetter, true, _refusals.GetValueOrDefault(id)?.Error ?? reason, reasonCategory),
            // Judged alone: the next smaller form.
            _ when pending.DeadLetter is null => new Refusal(
                outcome == DeliveryOutcome.TooLarge ? DeadLetterForm.WithoutPayload : DeadLetterForm.Whole, false, reason, reasonCategory),
            _ when pending.DeadLetter is DeadLetterForm.HeadersOnly => new Refusal(DeadLetterForm.HeadersOnly, true, reason, reasonCategory),
            _ => new Refusal(pending.DeadLetter + 1, false, _refusals.GetValueOrDefault(id)?.Error ?? reason, reasonCategory),
        };
    }

    /// <summary>
    /// Exactly-once delivery: the record an event is sent as, given what Kafka refused of it before (its dead letter, in
    /// the form reached). The same event otherwise.
    /// </summary>
    public MappingResult AsRefused(MappingResult mapped)
    {
        if (_refusals is null)
            return mapped;
        var record = mapped.Record ?? mapped.DeadLetter!;
        if (!_refusals.TryGetValue(record.EventId, out var refusal) || refusal.Form is not { } form)
            return mapped;
        var error = (_mapper.DeadLetterError(record) is { } first ? first + "; " : "") + refusal.Error +
                    (form == DeadLetterForm.WithoutPayload || form == DeadLetterForm.HeadersOnly ? $"; sent {Describe(form)}" : "");
        return new MappingResult(null, _mapper.DeadLetter(record, error, form), refusal.Reason);
    }

    /// <summary>
    /// Exactly-once delivery: waits until events may be sent to the topic (a Kafka transaction cannot hold some of its
    /// events back while it commits the rest, so a missing topic holds the stream).
    /// </summary>
    public Task WaitForTopicAsync(string topic, CancellationToken ct)
    {
        lock (_gate)
        {
            var gate = Gate(topic);
            if (gate.Status == TopicStatus.Open)
                return Task.CompletedTask;
            gate.Opened ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return gate.Opened.Task.WaitAsync(ct);
        }
    }

    /// <inheritdoc />
    public void ProducerError(Error error)
    {
        if (error.IsFatal && DeliveryErrors.Classify(error.Code, alone: true) == DeliveryOutcome.Fatal)
            // Refused for good (authorization, configuration): a rebuilt producer would be refused again.
            Fail(new CdcStartupException($"Kafka refused the producer: {error.Code} ({error.Reason}). Check the producer's credentials, " +
                                         "ACLs (the idempotent write permission too) and Cdc:Kafka:Producer settings."), producerFatal: true);
        else if (error.IsFatal)
            // The producer cannot continue (a refused batch with the gapless guarantee, a sequence gap, fenced): rebuild it
            // and resume from the slot.
            Fail(new DeliveryFailedException($"Producer failed: {error.Code} ({error.Reason})"), producerFatal: true);
        else if (error.Code == ErrorCode.Local_Application)
            Fail(new DeliveryFailedException($"A delivery handler threw: {error.Reason}"));
        else if (error.Code == ErrorCode.Local_AllBrokersDown && _status.SetKafkaReachable(false))
            _logger.LogWarning("Kafka unreachable ({Reason}); events stay in flight and the slot is not confirmed past them", error.Reason);
    }

    /// <summary>Stops the worker: no retry can get past this, whatever failure the session noticed first.</summary>
    void Stop(CdcStartupException stop)
    {
        _stop ??= stop;
        Fail(stop);
    }

    /// <summary>What ends the session: a reason to stop the worker if there is one, else the first failure.</summary>
    public async Task<Exception> FailureToThrowAsync() => _stop ?? await Failure;

    /// <summary>
    /// Ends the session: only the first failure counts; the rest follow from it. Nothing more is sent: the producer is
    /// purged, unless it failed for good itself (it sends nothing more then, and its reports say which records were
    /// refused, which a purge would hide).
    /// </summary>
    void Fail(Exception failure, bool producerFatal = false)
    {
        if (!_failure.TrySetResult(failure))
            return;
        if (producerFatal)
            _producerFailed = true;
        else
            _producer.Purge();
        Wake();
    }

    /// <summary>
    /// After the producer failed for good: lets its last delivery reports arrive (up to 3 s; records queued behind
    /// the refused ones are only reported when it is disposed), so the records it refused are remembered for the replay.
    /// </summary>
    public async Task SettleAsync()
    {
        if (!_producerFailed)
            return;
        var started = Stopwatch.GetTimestamp();
        while (Stopwatch.GetElapsedTime(started) < TimeSpan.FromSeconds(3) && Outstanding > 0)
            await Task.Delay(20);
    }

    void Wake()
    {
        if (_wake.CurrentCount == 0)
            _wake.Release();
    }

    /// <summary>
    /// Resolves failed records once everything handed to the producer has been reported, asks the cluster about new
    /// and blocked topics, and releases the events of topics that opened. Runs until the session ends.
    /// </summary>
    public async Task RunAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested && !Failure.IsCompleted)
        {
            await _wake.WaitAsync(FirstTopicCheckBackoff, ct);
            if (_rewinding && Outstanding == 0)
                await RewindAsync(ct);
            await CheckTopicsAsync(ct);
            await ProbeKafkaAsync(ct);
            lock (_gate)
                if (!_rewinding)
                    ReleaseOpenTopics();
        }
    }

    async Task RewindAsync(CancellationToken ct)
    {
        List<PendingEvent> failed;
        lock (_gate)
        {
            failed = [.. _failed.OrderBy(p => p.Sequence)];
            _failed.Clear();
        }
        for (var i = 0; i < failed.Count; i++)
        {
            if (Failure.IsCompleted)
                return;
            await ResolveAsync(failed[i], ct);
            lock (_gate)
            {
                if (_failed.Count > 0)
                {
                    // A record failed again while this round went on (e.g. the queue was full): the rest waits for the
                    // next round, behind it, so nothing later passes it.
                    _failed.AddRange(failed.Skip(i + 1));
                    break;
                }
            }
        }
        lock (_gate)
        {
            if (_failed.Count > 0)
            {
                Wake(); // records failed again while being resolved: another round once they are all reported
                return;
            }
            var paused = _paused.ToArray();
            _paused.Clear();
            _rewinding = false;
            foreach (var pending in paused)
            {
                if (_rewinding)
                    _paused.Add(pending);
                else
                    Route(pending);
            }
        }
    }

    /// <summary>Sends a failed record again, alone, or as its dead letter, as its outcome says; in read order.</summary>
    async Task ResolveAsync(PendingEvent pending, CancellationToken ct)
    {
        var outcome = pending.Outcome;
        while (!Failure.IsCompleted)
        {
            switch (outcome)
            {
                case DeliveryOutcome.Acknowledged:
                    return;
                case DeliveryOutcome.Purged:
                    pending.Alone = false;
                    lock (_gate)
                        Route(pending);
                    return;
                case DeliveryOutcome.UnknownTopic:
                    pending.Alone = false;
                    lock (_gate)
                    {
                        var topic = Gate(pending.Record.Topic);
                        if (topic.Status == TopicStatus.Open)
                        {
                            // It was there and is gone (deleted, or not yet propagated): ask again.
                            topic.Status = TopicStatus.Unchecked;
                            _knownTopics.TryRemove(topic.Topic, out _);
                        }
                        Wait(topic, pending);
                    }
                    return;
                case DeliveryOutcome.RetryAlone:
                    outcome = await ProduceAndWaitAsync(pending, ct);
                    break;
                case DeliveryOutcome.TooLarge or DeliveryOutcome.Rejected:
                    if (!BecomeSmallerDeadLetter(pending, outcome))
                        return;
                    outcome = await ProduceAndWaitAsync(pending, ct);
                    break;
                default:
                    return; // Retry or Fatal: the session ends (Failure)
            }
        }
    }

    /// <summary>
    /// Turns the event into its dead letter, or its dead letter into the next smaller form. False (and the worker stops)
    /// when even the smallest form was refused.
    /// </summary>
    bool BecomeSmallerDeadLetter(PendingEvent pending, DeliveryOutcome outcome)
    {
        var error = pending.Error!;
        var tooLarge = outcome == DeliveryOutcome.TooLarge;
        DeadLetterForm form;
        if (pending.DeadLetter is not { } current)
        {
            form = tooLarge ? DeadLetterForm.WithoutPayload : DeadLetterForm.Whole;
            pending.DeadLetterReason = tooLarge ? "too_large" : "rejected";
            pending.DeadLetterError = $"Kafka refused the record on {pending.Event.Topic}: {error.Code} ({error.Reason})";
        }
        else if (current == DeadLetterForm.HeadersOnly)
        {
            Stop(new CdcStartupException(
                $"Kafka refused the dead letter of event {pending.Event.EventId} even as key and headers only on {pending.Record.Topic}: " +
                $"{error.Code} ({error.Reason}). Stopping rather than skipping the event; check Cdc:Kafka:DeadLetterTopic and the " +
                "topic's max.message.bytes"));
            return false;
        }
        else
        {
            form = current + 1;
            pending.DeadLetterError ??= _mapper.DeadLetterError(pending.Event);
            pending.DeadLetterError += $"; its dead letter was refused too ({error.Code}) and is sent {Describe(form)}";
        }
        pending.DeadLetter = form;
        pending.Record = _mapper.DeadLetter(pending.Event, pending.DeadLetterError!, form);
        if (_refusals is not null)
            _refusals[pending.Event.EventId] = new Refusal(form, false, pending.DeadLetterError!, pending.DeadLetterReason ?? "rejected");
        _logger.LogWarning("Event {Id} goes to the dead-letter topic {Form}: {Error}", pending.Event.EventId, Describe(form), pending.DeadLetterError);
        return true;
    }

    static string Describe(DeadLetterForm form) => form switch
    {
        DeadLetterForm.Whole => "whole",
        DeadLetterForm.WithoutPayload => "without its payload",
        _ => "as key and headers only",
    };

    /// <summary>Produces the record once nothing else is in the producer (so it is alone), and waits for its report.</summary>
    async Task<DeliveryOutcome> ProduceAndWaitAsync(PendingEvent pending, CancellationToken ct)
    {
        while (Outstanding > 0 && !Failure.IsCompleted)
            await Task.Delay(5, ct);
        var awaiter = new TaskCompletionSource<DeliveryOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            var topic = Gate(pending.Record.Topic);
            if (topic.Status != TopicStatus.Open)
            {
                Wait(topic, pending);
                return DeliveryOutcome.Acknowledged; // resolved later, when its topic opens
            }
            // Nothing else is in the producer, and nothing new is handed to it while failed records are resolved.
            pending.Alone = true;
            pending.Awaiter = awaiter;
            Produce(pending, topic);
        }
        await Task.WhenAny(awaiter.Task, Failure).WaitAsync(ct);
        pending.Awaiter = null;
        return awaiter.Task.IsCompleted ? awaiter.Task.Result : DeliveryOutcome.Retry;
    }

    /// <summary>
    /// Kafka marked unreachable and nothing in flight whose report would say it is back (an idle leader): asks the
    /// cluster, at most every few seconds.
    /// </summary>
    async Task ProbeKafkaAsync(CancellationToken ct)
    {
        if (_status.KafkaReachable || Outstanding > 0 || Stopwatch.GetElapsedTime(_lastProbe) < ProbeInterval)
            return;
        _lastProbe = Stopwatch.GetTimestamp();
        if (await _admin.AnswersAsync(ct) && _status.SetKafkaReachable(true))
            _logger.LogInformation("Kafka answers again");
    }

    /// <summary>Asks the cluster about topics not yet checked, and again about blocked ones when their backoff is over.</summary>
    async Task CheckTopicsAsync(CancellationToken ct)
    {
        List<TopicGate> due;
        var now = DateTime.UtcNow;
        lock (_gate)
            due = [.. _topics.Values.Where(t => t.Status != TopicStatus.Open && t.NextCheck <= now)];
        foreach (var topic in due)
        {
            // A topic found before whose schema id is what is missing is not asked about again.
            var existence = _knownTopics.ContainsKey(topic.Topic) ? TopicExistence.Exists : await _admin.ExistsAsync(topic.Topic, ct);
            string? refused = null;
            if (existence == TopicExistence.Missing)
            {
                refused = await _admin.CreateAsync(topic.Topic, ct);
                if (refused is null)
                {
                    _logger.LogInformation("Created topic {Topic} (Cdc:Kafka:Topics)", topic.Topic);
                    existence = TopicExistence.Exists;
                }
            }
            ValueSchema? schema = null;
            if (existence == TopicExistence.Exists && _schemas is not null)
                schema = await _schemas.ResolveAsync(topic.Topic, ct);
            lock (_gate)
            {
                if (existence == TopicExistence.Exists)
                    _knownTopics.TryAdd(topic.Topic, 0);
                if (existence == TopicExistence.Exists && schema is null or { Resolution: SchemaResolution.Resolved })
                {
                    topic.ValuePrefix = schema?.Prefix;
                    Open(topic);
                }
                else
                {
                    if (existence == TopicExistence.Missing)
                        Block(topic, refused!);
                    else if (schema is { Resolution: SchemaResolution.Fatal } fatal)
                        Fail(new CdcStartupException(fatal.Problem!));
                    else if (schema is { } waiting)
                        BlockForSchema(topic, waiting);
                    topic.NextCheck = DateTime.UtcNow + topic.CheckBackoff;
                    topic.CheckBackoff = TimeSpan.FromTicks(Math.Min(topic.CheckBackoff.Ticks * 2, MaxTopicCheckBackoff.Ticks));
                }
            }
        }
    }

    void Open(TopicGate topic)
    {
        if (topic.Status == TopicStatus.Blocked)
        {
            _status.BlockedTopics--;
            _logger.LogInformation("Topic {Topic} {State} now: relaying the {Count} events that waited for it", topic.Topic,
                topic.BlockedBySchema ? "has its schema id" : "exists", topic.Waiting.Count);
            topic.BlockedBySchema = false;
        }
        topic.Status = TopicStatus.Open;
        topic.BlockedBecause = null;
        topic.Opened?.TrySetResult();
        topic.Opened = null;
        topic.CheckBackoff = FirstTopicCheckBackoff;
        _knownTopics.TryAdd(topic.Topic, 0);
    }

    void Block(TopicGate topic, string reason)
    {
        if (topic.Status == TopicStatus.Blocked)
            return;
        topic.Status = TopicStatus.Blocked;
        topic.BlockedBecause = reason;
        _status.BlockedTopics++;
        _logger.LogWarning(
            "Topic {Topic} does not exist and could not be created ({Reason}). Its events wait (the slot is not confirmed past " +
            "them) while the other topics' events go on; they are relayed in order once the topic exists. Create it, or let " +
            "the connector create it (Cdc:Kafka:Topics:*, and the CreateTopics permission)", topic.Topic, reason);
    }

    /// <summary>
    /// The topic exists but its schema id is not known: its events wait like a missing topic's. An unreachable registry is
    /// logged once by the resolver (not per topic); a refusal is about this topic's subject, logged once per topic.
    /// </summary>
    void BlockForSchema(TopicGate topic, ValueSchema schema)
    {
        var refused = schema.Resolution == SchemaResolution.Refused;
        if (topic.Status == TopicStatus.Blocked && topic.BlockedBecause == schema.Problem)
            return;
        if (topic.Status != TopicStatus.Blocked)
            _status.BlockedTopics++;
        var wasRefused = topic.BlockedBySchema && topic.BlockedBecause?.StartsWith("Schema Registry unreachable", StringComparison.Ordinal) == false;
        topic.Status = TopicStatus.Blocked;
        topic.BlockedBySchema = true;
        topic.BlockedBecause = schema.Problem;
        if (refused && !wasRefused)
            _logger.LogWarning(
                "Topic {Topic}: {Problem}. Its events wait (the slot is not confirmed past them) while the other topics' events " +
                "go on; they are relayed in order once the registry gives the subject's schema id", topic.Topic, schema.Problem);
    }

    /// <summary>Produces the waiting events of topics that are open, oldest first. Under the lock.</summary>
    void ReleaseOpenTopics()
    {
        foreach (var topic in _topics.Values)
            while (topic.Status == TopicStatus.Open && topic.Waiting.Count > 0 && !_rewinding)
                Produce(topic.Waiting.Dequeue(), topic);
    }

    /// <summary>
    /// Waits until every record handed to the producer has been reported and failed ones are resolved, or the timeout
    /// passes (stopping). Events waiting for a blocked topic are not waited for. Returns the events still in flight.
    /// </summary>
    public async Task<long> DrainAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while ((Outstanding > 0 || _rewinding || WaitingForCheck()) && DateTime.UtcNow < deadline && !Failure.IsCompleted)
            await Task.Delay(10);
        return _tracker.InFlightEvents;
    }

    /// <summary>Events wait for a topic the cluster has not been asked about yet (an answer comes soon, unlike a block).</summary>
    bool WaitingForCheck()
    {
        lock (_gate)
            return _topics.Values.Any(t => t.Status != TopicStatus.Blocked && t.Waiting.Count > 0);
    }

    public void Dispose()
    {
        lock (_gate)
            _status.BlockedTopics -= _topics.Values.Count(t => t.Status == TopicStatus.Blocked);
        _producer.Dispose();
        _wake.Dispose();
    }
}
