using System.Diagnostics;
using Cdc.Mapping;
using Cdc.Positions;
using Confluent.Kafka;

namespace Cdc.Publishing;

/// <summary>The forms of a dead letter, from whole to smallest: each is tried when Kafka refuses the one before.</summary>
public enum DeadLetterForm
{
    /// <summary>The <c>OutboxEvent</c> as mapped.</summary>
    Whole,
    /// <summary>The <c>OutboxEvent</c> without its payload.</summary>
    WithoutPayload,
    /// <summary>Key and headers (<c>id</c>, <c>error</c>) only, no value.</summary>
    HeadersOnly,
}

/// <summary>
/// What Kafka refused of an event in an earlier session, and so how it is sent when it comes again: as
/// <see cref="Form"/> of its dead letter (null: the event itself), and <see cref="Alone"/> (nothing else in the producer,
/// so a refusal is about it) when it was refused with its batch.
/// </summary>
public sealed record Refusal(DeadLetterForm? Form, bool Alone, string Error, string Reason);

/// <summary>
/// An event handed to the publisher: its record (the event's, or its dead letter once it became one), where to
/// acknowledge it, and what its delivery reports decided so far.
/// </summary>
public sealed class PendingEvent
{
    internal PendingEvent(long sequence, OutboxRecord record, PositionTracker.Transaction transaction, int bytes, DateTime commitTime)
    {
        Sequence = sequence;
        Record = record;
        Event = record;
        Transaction = transaction;
        Bytes = bytes;
        CommitTime = commitTime;
    }

    /// <summary>Position in read order: failed events are sent again in this order.</summary>
    public long Sequence { get; }
    /// <summary>The record to produce now: the event's, or its dead letter.</summary>
    public OutboxRecord Record { get; internal set; }
    /// <summary>The event's own record, from which dead letters are made.</summary>
    public OutboxRecord Event { get; }
    public PositionTracker.Transaction Transaction { get; }
    /// <summary>What the event counts against the in-flight bound (its key and value as mapped).</summary>
    public int Bytes { get; }
    public DateTime CommitTime { get; }
    public long ProducedAt { get; internal set; }
    /// <summary>The send span, when the row carried a trace to continue.</summary>
    public Activity? Activity { get; internal set; }

    /// <summary>Null while the event itself is sent; otherwise the form of its dead letter being sent.</summary>
    public DeadLetterForm? DeadLetter { get; internal set; }
    /// <summary>The dead letter's reason category (metrics): unroutable, headers, payload, unreadable, too_large, rejected.</summary>
    public string? DeadLetterReason { get; internal set; }
    /// <summary>The dead letter's <c>error</c> header.</summary>
    public string? DeadLetterError { get; internal set; }

    /// <summary>The Schema Registry framing the producer puts before the record's value (its topic's), or null.</summary>
    public byte[]? ValuePrefix { get; internal set; }

    /// <summary>Sent as the only record of its topic in the producer (so a refusal is about it alone).</summary>
    internal bool Alone { get; set; }
    internal DeliveryOutcome Outcome { get; set; }
    internal Error? Error { get; set; }
    /// <summary>Set while the publisher waits for this event's own report (a retry alone, a dead letter).</summary>
    internal TaskCompletionSource<DeliveryOutcome>? Awaiter { get; set; }

    /// <summary>The producer's delivery callback for this event, made once and reused when it is sent again.</summary>
    internal Action<DeliveryReport<byte[], byte[]>>? Callback { get; set; }
}
