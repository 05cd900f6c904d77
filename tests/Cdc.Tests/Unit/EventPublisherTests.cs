using System.Collections.Concurrent;
using System.Text;
using Cdc.Mapping;
using Cdc.Outbox.V1;
using Cdc.Positions;
using Cdc.Publishing;
using Cdc.Relay;
using Cdc.Replication;
using Cdc.Telemetry;
using Confluent.Kafka;
using Microsoft.Extensions.Logging.Abstractions;

namespace Cdc.Tests.Unit;

/// <summary>
/// The publisher's decisions for every delivery outcome, against a producer that does what the test says: what is
/// produced, in which order, alone or not, purged when, dead-lettered how, and what the tracker hears.
/// </summary>
public partial class EventPublisherTests
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);
    static readonly TransactionInfo Transaction = new(0x100, 7, new DateTime(2026, 11, 30, 0, 0, 0, DateTimeKind.Utc));

    /// <summary>Records what it is given; the test answers with <see cref="Report"/>. Checks nothing is produced on a delivery thread.</summary>
    sealed class FakeProducer(IDeliveryReports reports) : IRecordProducer
    {
        readonly object _gate = new();
        public readonly List<Sent> Produced = [];
        public int Purges;
        public Func<PendingEvent, ErrorCode?>? RefuseAtOnce;
        [ThreadStatic] static bool _onDeliveryThread;

        public void Produce(PendingEvent pending)
        {
            Assert.False(_onDeliveryThread, "produced on the delivery thread");
            if (RefuseAtOnce?.Invoke(pending) is { } code)
                throw new ProduceException<byte[], byte[]>(new Error(code), new DeliveryResult<byte[], byte[]>());
            lock (_gate)
                Produced.Add(new Sent(pending, pending.Record, pending.DeadLetter, pending.Alone, Purges));
        }

        public void Purge()
        {
            List<Sent> unreported;
            lock (_gate)
            {
                Purges++;
                unreported = [.. Produced.Where(p => !p.Reported)];
                foreach (var sent in unreported)
                    sent.Reported = true;
            }
            // As librdkafka does: purged records are reported later, on the delivery thread.
            foreach (var sent in unreported)
                Task.Run(() => Deliver(sent.Pending, ErrorCode.Local_PurgeQueue));
        }

        /// <summary>Reports the latest hand-over of each event, all marked reported before any report is delivered (one batch).</summary>
        public void Report(params (PendingEvent Pending, ErrorCode Code)[] batch)
        {
            var due = new List<(PendingEvent, ErrorCode)>();
            lock (_gate)
            {
                foreach (var (pending, code) in batch)
                    if (Produced.LastOrDefault(p => p.Pending == pending && !p.Reported) is { } sent)
                    {
                        sent.Reported = true;
                        due.Add((pending, code));
                    }
            }
            foreach (var (pending, code) in due)
                Deliver(pending, code);
        }

        public void Report(ErrorCode code, params PendingEvent[] batch) => Report([.. batch.Select(p => (p, code))]);

        public void Report(PendingEvent pending, ErrorCode code) => Report(code, pending);

        void Deliver(PendingEvent pending, ErrorCode code)
        {
            _onDeliveryThread = true;
            try
            {
                reports.Delivered(pending, new Error(code));
            }
            finally
            {
                _onDeliveryThread = false;
            }
        }

        /// <summary>Reports the latest record handed over for the event, once it has been handed over.</summary>
        public async Task ReportLatestAsync(Func<Sent, bool> which, ErrorCode code)
        {
            var pending = await WaitForAsync(which);
            Report(pending, code);
        }

        /// <summary>The event of the <paramref name="count"/>th hand-over matching <paramref name="which"/>, once there is one.</summary>
        public async Task<PendingEvent> WaitForAsync(Func<Sent, bool> which, int count = 1)
        {
            var deadline = DateTime.UtcNow + Timeout;
            while (true)
            {
                lock (_gate)
                {
                    var matching = Produced.Where(which).ToList();
                    if (matching.Count >= count)
                        return matching[count - 1].Pending;
                }
                if (DateTime.UtcNow > deadline)
                    throw new TimeoutException("not produced");
                await Task.Delay(5);
            }
        }

        public List<Sent> Snapshot()
        {
            lock (_gate)
                return [.. Produced];
        }

        public void Dispose()
        {
        }
    }

    /// <summary>A record as it was handed to the producer (the event's record changes when it becomes a dead letter).</summary>
    sealed record Sent(PendingEvent Pending, OutboxRecord Record, DeadLetterForm? Form, bool Alone, int Purges)
    {
        public string Topic => Record.Topic;
        public bool Reported { get; set; }
    }

    sealed class FakeAdmin : ITopicAdmin
    {
        public readonly ConcurrentDictionary<string, bool> Existing = new();
        public string? CreateRefusal = "PolicyViolation (not allowed)";
        public readonly ConcurrentQueue<string> Created = new();

        public Task<TopicExistence> ExistsAsync(string topic, CancellationToken ct) =>
            Task.FromResult(Existing.ContainsKey(topic) ? TopicExistence.Exists : TopicExistence.Missing);

        public bool Answers = true;

        public Task<bool> AnswersAsync(CancellationToken ct) => Task.FromResult(Answers);

        public Task<string?> CreateAsync(string topic, CancellationToken ct)
        {
            if (CreateRefusal is null)
            {
                Existing[topic] = true;
                Created.Enqueue(topic);
            }
            return Task.FromResult(CreateRefusal);
        }
    }

    sealed class Fixture : IAsyncDisposable
    {
        public readonly OutboxEventMapper Mapper = new(new TopicRouter("t.{aggregate_type}"), "t.dlq");
        public readonly PositionTracker Tracker = new(1000, 100_000_000);
        public readonly RelayStatus Status = new();
        public readonly FakeAdmin Admin = new();
        public readonly EventPublisher Publisher;
        public FakeProducer Producer = null!;
        readonly CancellationTokenSource _stop = new();
        readonly Task _run;
        int _row;

        public Fixture(params string[] existingTopics) : this(null, existingTopics)
        {
        }

        public Fixture(IValueSchemas? schemas, params string[] existingTopics)
        {
            foreach (var topic in existingTopics.Append("t.dlq"))
                Admin.Existing[topic] = true;
            // Topics that exist are known from the start (as after a first session); others are asked about.
            var known = new ConcurrentDictionary<string, byte>(Admin.Existing.Keys.Select(t => KeyValuePair.Create(t, (byte)0)));
            Publisher = new EventPublisher(r => Producer = new FakeProducer(r), _ => Admin, Mapper, Tracker,
                new CdcMetrics(Status), Status, NullLogger.Instance, known, schemas);
            _run = Publisher.RunAsync(_stop.Token);
        }

        /// <summary>Publishes rows of one transaction and commits it at <paramref name="endLsn"/>.</summary>
        public List<string> Publish(ulong endLsn, params (string AggregateType, string AggregateId, int PayloadBytes)[] rows)
        {
            var transaction = Tracker.Begin(Transaction.CommitTime)!;
            var ids = new List<string>();
            foreach (var (type, aggregate, bytes) in rows)
            {
                var id = $"e{++_row}";
                ids.Add(id);
                var row = new OutboxRow
                {
                    Id = id, AggregateType = type, AggregateId = aggregate, EventType = "E",
                    Payload = Encoding.UTF8.GetBytes("\"" + new string('x', bytes) + "\""), CreatedAt = Transaction.CommitTime,
                };
                Publisher.Publish(Mapper.Map(row, Transaction), transaction, Transaction.CommitTime);
            }
            Tracker.Commit(transaction, endLsn);
            return ids;
        }

        public async Task WaitConfirmableAsync(ulong lsn)
        {
            var deadline = DateTime.UtcNow + Timeout;
            while (Tracker.Confirmable < lsn)
            {
                if (Publisher.Failure.IsCompleted)
                    throw await Publisher.Failure;
                if (DateTime.UtcNow > deadline)
                    throw new TimeoutException($"confirmable {Tracker.Confirmable}, waiting for {lsn}");
                await Task.Delay(5);
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            try
            {
                await _run;
            }
            catch (OperationCanceledException)
            {
            }
            Publisher.Dispose();
        }
    }

    static Func<Sent, bool> Is(string id) => s => s.Pending.Event.EventId == id;

    [Fact]
    public async Task Acknowledged_events_are_produced_in_read_order_and_confirm_their_transaction()
    {
        await using var f = new Fixture("t.order");
        var ids = f.Publish(100, ("order", "o1", 10), ("order", "o1", 10));
        var first = await f.Producer.WaitForAsync(Is(ids[0]));
        var second = await f.Producer.WaitForAsync(Is(ids[1]));
        f.Producer.Report(second, ErrorCode.NoError);
        Assert.Equal(0UL, f.Tracker.Confirmable);
        f.Producer.Report(first, ErrorCode.NoError);
        await f.WaitConfirmableAsync(100);
        Assert.Equal([ids[0], ids[1]], f.Producer.Snapshot().Select(p => p.Pending.Event.EventId));
        Assert.Equal(0, f.Producer.Purges);
    }

    [Fact]
    public async Task A_record_too_large_alone_is_dead_lettered_without_its_payload_and_the_stream_goes_on()
    {
        await using var f = new Fixture("t.order");
        f.Producer.RefuseAtOnce = p => p.Record.Topic == "t.order" && p.Record.Value.Length > 1000 ? ErrorCode.MsgSizeTooLarge : null;
        var ids = f.Publish(100, ("order", "o1", 5000), ("order", "o1", 10));

        var deadLetter = await f.Producer.WaitForAsync(p => p.Record.Topic == "t.dlq");
        Assert.Equal(ids[0], deadLetter.Event.EventId);
        Assert.True(OutboxEvent.Parser.ParseFrom(deadLetter.Record.Value).Payload.IsEmpty);
        Assert.Contains("MsgSizeTooLarge", Encoding.UTF8.GetString(deadLetter.Record.Headers.GetLastBytes("error")));
        f.Producer.Report(deadLetter, ErrorCode.NoError);
        await f.Producer.ReportLatestAsync(Is(ids[1]), ErrorCode.NoError);
        await f.WaitConfirmableAsync(100);
        Assert.DoesNotContain(f.Producer.Snapshot(), p => p.Pending.Event.EventId == ids[0] && p.Topic == "t.order");
    }

    [Fact]
    public async Task Records_refused_with_their_batch_are_sent_again_alone_and_keep_their_payload()
    {
        await using var f = new Fixture("t.order");
        var ids = f.Publish(100, ("order", "o1", 100), ("order", "o1", 100), ("order", "o1", 100));
        foreach (var id in ids)
            await f.Producer.WaitForAsync(Is(id));
        // The broker refused the batch of the first two; the third was behind them in the queue.
        f.Producer.Report(ErrorCode.MsgSizeTooLarge, await f.Producer.WaitForAsync(Is(ids[0])), await f.Producer.WaitForAsync(Is(ids[1])));

        // Each is sent again alone, one at a time, in order, then the purged third.
        for (var i = 0; i < 2; i++)
        {
            var retry = await f.Producer.WaitForAsync(Is(ids[i]), count: 2);
            Assert.True(retry.Alone);
            Assert.Equal("t.order", retry.Record.Topic);
            Assert.Equal(1, f.Producer.Snapshot().Count(p => p.Pending == retry && p.Alone));
            f.Producer.Report(retry, ErrorCode.NoError);
        }
        f.Producer.Report(await f.Producer.WaitForAsync(Is(ids[2]), count: 2), ErrorCode.NoError);
        await f.WaitConfirmableAsync(100);
        Assert.DoesNotContain(f.Producer.Snapshot(), p => p.Topic == "t.dlq");
        Assert.True(f.Producer.Purges >= 1, "the producer is purged when a record fails");
        var firsts = f.Producer.Snapshot().Where(p => p.Purges >= 1).Select(p => p.Pending.Event.EventId).ToList();
        Assert.Equal([ids[0], ids[1], ids[2]], firsts); // after the purge, in read order
    }

    [Fact]
    public async Task A_record_too_large_even_alone_after_a_batch_refusal_is_dead_lettered_without_payload()
    {
        await using var f = new Fixture("t.order");
        var ids = f.Publish(100, ("order", "o1", 100));
        f.Producer.Report(await f.Producer.WaitForAsync(Is(ids[0])), ErrorCode.MsgSizeTooLarge);
        var alone = await f.Producer.WaitForAsync(Is(ids[0]), count: 2);
        Assert.True(alone.Alone);
        f.Producer.Report(alone, ErrorCode.MsgSizeTooLarge);
        var deadLetter = await f.Producer.WaitForAsync(p => p.Record.Topic == "t.dlq");
        Assert.Equal(DeadLetterForm.WithoutPayload, deadLetter.DeadLetter);
        f.Producer.Report(deadLetter, ErrorCode.NoError);
        await f.WaitConfirmableAsync(100);
    }

    [Fact]
    public async Task A_dead_letter_that_is_refused_is_reduced_and_the_worker_stops_when_even_headers_only_are_refused()
    {
        await using var f = new Fixture("t.order");
        var ids = f.Publish(100, ("not a topic", "o1", 100));
        var whole = await f.Producer.WaitForAsync(p => p.Record.Topic == "t.dlq");
        Assert.Equal(DeadLetterForm.Whole, whole.DeadLetter);
        Assert.False(OutboxEvent.Parser.ParseFrom(whole.Record.Value).Payload.IsEmpty);
        f.Producer.Report(whole, ErrorCode.MsgSizeTooLarge);
        // Refused in a batch: sent again alone first, and refused alone.
        var wholeAlone = await f.Producer.WaitForAsync(p => p.Record.Topic == "t.dlq", count: 2);
        Assert.True(wholeAlone.Alone);
        f.Producer.Report(wholeAlone, ErrorCode.MsgSizeTooLarge);

        var reduced = await f.Producer.WaitForAsync(p => p.Record.Topic == "t.dlq" && p.Form == DeadLetterForm.WithoutPayload);
        Assert.True(OutboxEvent.Parser.ParseFrom(reduced.Record.Value).Payload.IsEmpty);
        var error = Encoding.UTF8.GetString(reduced.Record.Headers.GetLastBytes("error"));
        Assert.Contains("does not make a valid Kafka topic name", error);
        Assert.Contains("refused too", error);
        f.Producer.Report(reduced, ErrorCode.MsgSizeTooLarge);

        var smallest = await f.Producer.WaitForAsync(p => p.Record.Topic == "t.dlq" && p.Form == DeadLetterForm.HeadersOnly);
        Assert.Empty(smallest.Record.Value);
        f.Producer.Report(smallest, ErrorCode.InvalidRecord);

        var failure = await f.Publisher.Failure.WaitAsync(Timeout);
        Assert.IsType<CdcStartupException>(failure);
        Assert.Contains($"dead letter of event {ids[0]}", failure.Message);
        Assert.Equal(0UL, f.Tracker.Confirmable);
    }

    [Fact]
    public async Task An_invalid_record_is_dead_lettered_whole_and_the_rest_of_its_batch_is_sent_again_alone()
    {
        await using var f = new Fixture("t.order");
        var ids = f.Publish(100, ("order", "o1", 10), ("order", "o2", 10));
        var batch = new[] { await f.Producer.WaitForAsync(Is(ids[0])), await f.Producer.WaitForAsync(Is(ids[1])) };
        f.Producer.Report((batch[0], ErrorCode.InvalidRecord), (batch[1], ErrorCode.Local_InvalidDifferentRecord));

        // The named record is judged alone too (a broker may refuse a whole batch with InvalidRecord): refused alone, it is
        // dead-lettered whole.
        var first = await f.Producer.WaitForAsync(Is(ids[0]), count: 2);
        Assert.True(first.Alone);
        f.Producer.Report(first, ErrorCode.InvalidRecord);
        var deadLetter = await f.Producer.WaitForAsync(p => p.Record.Topic == "t.dlq");
        Assert.Equal(ids[0], deadLetter.Event.EventId);
        Assert.Equal(DeadLetterForm.Whole, deadLetter.DeadLetter);
        f.Producer.Report(deadLetter, ErrorCode.NoError);
        var alone = await f.Producer.WaitForAsync(Is(ids[1]), count: 2);
        Assert.True(alone.Alone);
        f.Producer.Report(alone, ErrorCode.NoError);
        await f.WaitConfirmableAsync(100);
    }

    [Fact]
    public async Task Events_for_a_topic_that_does_not_exist_wait_while_other_topics_go_on_and_follow_in_order_once_it_exists()
    {
        await using var f = new Fixture("t.order");
        var first = f.Publish(100, ("order", "o1", 10), ("stray", "s1", 10));
        var second = f.Publish(200, ("order", "o1", 10), ("stray", "s1", 10));
        // The healthy topic's events are produced and acknowledged; the stray ones are never handed to the producer.
        f.Producer.Report(await f.Producer.WaitForAsync(Is(first[0])), ErrorCode.NoError);
        f.Producer.Report(await f.Producer.WaitForAsync(Is(second[0])), ErrorCode.NoError);
        await OutboxTopicsWait(() => f.Status.DeliveryBlocked, "the stray topic is reported blocked");
        Assert.False(f.Status.Ready);
        Assert.DoesNotContain(f.Producer.Snapshot(), p => p.Topic == "t.stray");
        Assert.Equal(0UL, f.Tracker.Confirmable);

        f.Admin.Existing["t.stray"] = true; // created by someone else
        f.Producer.Report(await f.Producer.WaitForAsync(Is(first[1])), ErrorCode.NoError);
        f.Producer.Report(await f.Producer.WaitForAsync(Is(second[1])), ErrorCode.NoError);
        await f.WaitConfirmableAsync(200);
        Assert.False(f.Status.DeliveryBlocked);
        Assert.Equal([first[1], second[1]], f.Producer.Snapshot().Where(p => p.Topic == "t.stray").Select(p => p.Pending.Event.EventId));
        // Nothing was sent twice.
        Assert.Equal(4, f.Producer.Snapshot().Count);
    }

    [Fact]
    public async Task A_missing_topic_is_created_when_the_cluster_allows_it()
    {
        await using var f = new Fixture();
        f.Admin.CreateRefusal = null;
        var ids = f.Publish(100, ("order", "o1", 10));
        f.Producer.Report(await f.Producer.WaitForAsync(Is(ids[0])), ErrorCode.NoError);
        await f.WaitConfirmableAsync(100);
        Assert.Equal(["t.order"], f.Admin.Created);
        Assert.False(f.Status.DeliveryBlocked);
    }

    [Fact]
    public async Task A_topic_that_disappears_while_streaming_makes_its_events_wait_not_fail_the_session()
    {
        await using var f = new Fixture("t.order");
        var ids = f.Publish(100, ("order", "o1", 10), ("order", "o1", 10));
        var first = await f.Producer.WaitForAsync(Is(ids[0]));
        await f.Producer.WaitForAsync(Is(ids[1]));
        f.Admin.Existing.TryRemove("t.order", out _);
        f.Producer.Report(first, ErrorCode.UnknownTopicOrPart);
        await OutboxTopicsWait(() => f.Status.DeliveryBlocked, "the topic is reported blocked");
        Assert.False(f.Publisher.Failure.IsCompleted);
        f.Admin.Existing["t.order"] = true;
        f.Producer.Report(await f.Producer.WaitForAsync(Is(ids[0]), count: 2), ErrorCode.NoError);
        f.Producer.Report(await f.Producer.WaitForAsync(Is(ids[1]), count: 2), ErrorCode.NoError);
        await f.WaitConfirmableAsync(100);
    }

    [Theory]
    [InlineData(ErrorCode.Local_MsgTimedOut, typeof(DeliveryFailedException))]
    [InlineData(ErrorCode.NotEnoughReplicas, typeof(DeliveryFailedException))]
    [InlineData(ErrorCode.TopicAuthorizationFailed, typeof(CdcStartupException))]
    public async Task Connection_and_cluster_failures_end_the_session_and_purge_the_producer_at_once(ErrorCode code, Type failure)
    {
        await using var f = new Fixture("t.order");
        var ids = f.Publish(100, ("order", "o1", 10), ("order", "o1", 10));
        await f.Producer.WaitForAsync(Is(ids[1]));
        f.Producer.Report(await f.Producer.WaitForAsync(Is(ids[0])), code);
        Assert.IsType(failure, await f.Publisher.Failure.WaitAsync(Timeout));
        Assert.True(f.Producer.Purges >= 1, "nothing queued behind the failed record may still be sent");
        await Task.Delay(100);
        Assert.Equal(2, f.Producer.Snapshot().Count); // nothing sent again in this session: the relay resumes from the slot
        Assert.Equal(0UL, f.Tracker.Confirmable);
    }

    [Fact]
    public async Task An_exception_in_a_delivery_handler_ends_the_session_instead_of_leaving_the_event_unacknowledged()
    {
        await using var f = new Fixture("t.order");
        f.Publish(100, ("order", "o1", 10));
        ((IDeliveryReports)f.Publisher).ProducerError(new Error(ErrorCode.Local_Application, "System.Exception: boom"));
        var failure = await f.Publisher.Failure.WaitAsync(Timeout);
        Assert.IsType<DeliveryFailedException>(failure);
        Assert.Contains("boom", failure.Message);
    }

    [Fact]
    public async Task A_full_producer_queue_makes_records_wait_and_go_again_in_order_never_on_the_delivery_thread()
    {
        await using var f = new Fixture("t.order");
        var refusals = 1;
        f.Producer.RefuseAtOnce = p => p.Event.EventId == "e2" && Interlocked.Decrement(ref refusals) >= 0 ? ErrorCode.Local_QueueFull : null;
        var ids = f.Publish(100, ("order", "o1", 10), ("order", "o1", 10), ("order", "o1", 10));
        // e2 was refused at once: it and everything after it wait until the producer has room (nothing in it), then
        // go in order. e1, taken before, needs no purge: nothing after it was taken.
        foreach (var id in ids)
            f.Producer.Report(await f.Producer.WaitForAsync(Is(id)), ErrorCode.NoError);
        await f.WaitConfirmableAsync(100);
        Assert.Equal(-1, refusals);
        Assert.Equal(ids, f.Producer.Snapshot().Select(p => p.Pending.Event.EventId));
        Assert.Equal(0, f.Producer.Purges);
    }

    [Fact]
    public async Task A_full_queue_while_purged_records_are_sent_again_never_lets_a_later_event_of_the_aggregate_pass_an_earlier_one()
    {
        // Review: records taken back by a purge are handed over again in read order during the rewind. When one of them
        // is refused at once (QUEUE_FULL: librdkafka frees its queue only after a delivery-report batch is destroyed, so
        // right after the last report the queue can still be full), the rewind goes on with the next one: e3 is handed to
        // the producer before e2, and Kafka can append e3 first.
        await using var f = new Fixture("t.order");
        var ids = f.Publish(100, ("order", "o1", 10), ("order", "o1", 10), ("order", "o1", 10));
        foreach (var id in ids)
            await f.Producer.WaitForAsync(Is(id));
        var refusals = 1;
        f.Producer.RefuseAtOnce = p => p.Event.EventId == ids[1] && f.Producer.Purges > 0 && Interlocked.Decrement(ref refusals) >= 0
            ? ErrorCode.Local_QueueFull : null;
        // The first record's batch is refused as too large: it is sent again alone, e2 and e3 were purged behind it.
        f.Producer.Report(await f.Producer.WaitForAsync(Is(ids[0])), ErrorCode.MsgSizeTooLarge);
        f.Producer.Report(await f.Producer.WaitForAsync(p => Is(ids[0])(p) && p.Alone), ErrorCode.NoError);

        var deadline = DateTime.UtcNow + Timeout;
        while (f.Tracker.Confirmable < 100)
        {
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException("not confirmable");
            foreach (var sent in f.Producer.Snapshot().Where(p => !p.Reported && p.Purges > 0))
                f.Producer.Report(sent.Pending, ErrorCode.NoError);
            await Task.Delay(5);
        }
        Assert.Equal(-1, refusals);
        var afterPurge = f.Producer.Snapshot().Where(p => p.Purges > 0).Select(p => p.Pending.Event.EventId).ToList();
        Assert.Equal([ids[0], ids[1], ids[2]], afterPurge);
    }

    static async Task OutboxTopicsWait(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException(what);
            await Task.Delay(10);
        }
    }
}
