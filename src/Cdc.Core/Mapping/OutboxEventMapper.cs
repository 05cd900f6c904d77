using System.Text;
using System.Text.Json;
using Cdc.Configuration;
using Cdc.Outbox.V1;
using Cdc.Publishing;
using Confluent.Kafka;
using Google.Protobuf;
using Timestamp = Google.Protobuf.WellKnownTypes.Timestamp;

namespace Cdc.Mapping;

/// <summary>
/// Turns an outbox row into the Kafka record the contract describes (topic, key, headers, Protobuf value, or the payload
/// itself with <c>ValueFormat=Payload</c>), or into a dead-letter record that says why it cannot be published. Dead
/// letters are always OutboxEvents.
/// </summary>
public sealed class OutboxEventMapper(TopicRouter router, string deadLetterTopic, RecordFormat? format = null)
{
    readonly RecordFormat _format = format ?? RecordFormat.Default;

    public string DeadLetterTopic { get; } = deadLetterTopic;

    /// <summary>
    /// Maps an inserted outbox row. Never throws: a row that cannot become an event, whatever the reason, becomes a
    /// dead letter that says why (one problem row never stops the stream).
    /// </summary>
    public MappingResult Map(OutboxRow row, TransactionInfo transaction)
    {
        try
        {
            return MapRow(row, transaction);
        }
        catch (Exception e)
        {
            var evt = new OutboxEvent { Id = row.Id.Length > 0 ? row.Id : $"lsn:{transaction.CommitLsn:X}", Source = SourceOf(transaction) };
            return DeadLetterOf(evt, $"row could not be mapped ({e.GetType().Name}: {e.Message})", "unreadable");
        }
    }

    MappingResult MapRow(OutboxRow row, TransactionInfo transaction)
    {
        var headers = new List<KeyValuePair<string, string>>();
        if (row.ReadError is { } readError)
        {
            var unread = EventOf(row, transaction, headers, "");
            if (unread.Id.Length == 0)
                unread.Id = $"lsn:{transaction.CommitLsn:X}";
            return DeadLetterOf(unread, readError, "unreadable");
        }

        var headersError = ReadHeaders(row.Headers, headers);
        var contentType = ContentType(row.PayloadKind, headers);
        if (headersError is not null)
            return DeadLetterOf(EventOf(row, transaction, headers, contentType), headersError, "headers");
        if (row.PayloadKind == PayloadKind.Bytes && ContentTypes.IsJson(contentType) && !IsUtf8(row.Payload))
            return DeadLetterOf(EventOf(row, transaction, headers, contentType),
                $"payload is bytea with content-type {contentType} but is not valid UTF-8", "payload");
        // The event's own format is written straight from the row (the same bytes as EventOf(...).ToByteArray(), without
        // the objects); with ValueFormat=Payload the record keeps the event for its dead letters.
        var evt = _format.Value == ValueFormat.OutboxEvent ? null : EventOf(row, transaction, headers, contentType);
        var value = evt is null ? OutboxEventWriter.Write(row, contentType, headers, transaction) : row.Payload ?? [];
        return Route(new RouteInput(row.Id, row.EventType ?? "", row.AggregateId ?? "", headers, row.AggregateType, row.Placed),
                   value, evt, out var unroutable)
               ?? DeadLetterOf(evt ?? EventOf(row, transaction, headers, contentType), unroutable, "unroutable");
    }

    /// <summary>The row's event as a message (dead letters, <c>ValueFormat=Payload</c>); its headers in the order read.</summary>
    static OutboxEvent EventOf(OutboxRow row, TransactionInfo transaction, List<KeyValuePair<string, string>> headers, string contentType)
    {
        var evt = new OutboxEvent
        {
            Id = row.Id,
            AggregateType = row.AggregateType ?? "",
            AggregateId = row.AggregateId ?? "",
            EventType = row.EventType ?? "",
            Payload = row.Payload is null ? ByteString.Empty : UnsafeByteOperations.UnsafeWrap(row.Payload),
            PayloadContentType = contentType,
            CreatedAt = row.CreatedAt is { } created ? Timestamp.FromDateTime(DateTime.SpecifyKind(created, DateTimeKind.Utc)) : null,
            Source = SourceOf(transaction),
        };
        foreach (var (name, value) in headers)
            evt.Headers.Add(name, value);
        return evt;
    }

    /// <summary>
    /// Maps an event a service emitted with <c>pg_logical_emit_message</c> (table-less mode): the message content is a
    /// serialized <see cref="OutboxEvent"/>; the connector adds where it was committed.
    /// </summary>
    public MappingResult Map(ReadOnlySpan<byte> emitted, TransactionInfo transaction, ulong messageLsn)
    {
        OutboxEvent evt;
        try
        {
            evt = OutboxEvent.Parser.ParseFrom(emitted);
        }
        catch (InvalidProtocolBufferException e)
        {
            // No id to key it by: the dead letter carries the message's position instead.
            evt = new OutboxEvent { Id = $"lsn:{messageLsn:X}", Payload = ByteString.CopyFrom(emitted), Source = SourceOf(transaction) };
            return DeadLetterOf(evt, $"logical decoding message is not a cdc.outbox.v1.OutboxEvent ({e.Message})", "payload");
        }
        evt.Source = SourceOf(transaction);
        if (evt.PayloadContentType.Length == 0)
            evt.PayloadContentType = ContentTypes.OctetStream;
        if (evt.Id.Length == 0)
            return DeadLetterOf(evt, "id is empty", "payload");
        if (ContentTypes.IsJson(evt.PayloadContentType) && !IsUtf8(evt.Payload.Span))
            return DeadLetterOf(evt, $"payload has content-type {evt.PayloadContentType} but is not valid UTF-8", "payload");
        var asEvent = _format.Value == ValueFormat.OutboxEvent;
        return Route(new RouteInput(evt.Id, evt.EventType, evt.AggregateId, [.. evt.Headers],
                       evt.AggregateType.Length == 0 ? null : evt.AggregateType, _format.Placements.Count == 0 ? null : _format.PlacedOf(evt)),
                   asEvent ? evt.ToByteArray() : evt.Payload.ToByteArray(), asEvent ? null : evt, out var unroutable)
               ?? DeadLetterOf(evt, unroutable, "unroutable");
    }

    /// <summary>What routing needs of an event: its id, event type and aggregate id, headers (in the map's order, names
    /// distinct), aggregate type (null: NULL) and placed columns' values (null: none placed; an absent entry places nothing).</summary>
    readonly record struct RouteInput(string Id, string EventType, string AggregateId, List<KeyValuePair<string, string>> Headers,
        string? AggregateType, PlacedValue?[]? Placed);

    /// <summary>The event's record; null when it cannot be routed (then <paramref name="unroutable"/> says why: dead-letter it).</summary>
    /// <param name="value">The record's value: the serialized event, or (<c>ValueFormat=Payload</c>) the payload.</param>
    /// <param name="payloadEvent">With <c>ValueFormat=Payload</c>: the event, which the record keeps for its dead letters.</param>
    MappingResult? Route(in RouteInput e, byte[] value, OutboxEvent? payloadEvent, out string unroutable)
    {
        unroutable = "";
        var topic = router.Route(e.AggregateType, out var routeError);
        if (topic is null)
        {
            unroutable = routeError!;
            return null;
        }

        var asEvent = _format.Value == ValueFormat.OutboxEvent;
        var headers = new Headers { { HeaderNames.Id, Encoding.UTF8.GetBytes(e.Id) } };
        if (asEvent)
            headers.Add(HeaderNames.EventType, Encoding.UTF8.GetBytes(e.EventType));

        int? partition = null;
        var placements = _format.Placements;
        for (var i = 0; i < placements.Count && e.Placed is not null; i++)
        {
            if (e.Placed[i] is not { } placedValue)
                continue;
            var placement = placements[i];
            if (placement.Target == PlacementTarget.Header)
            {
                // A NULL column is a header without a value, as Debezium's router places it.
                headers.Add(placement.HeaderName, placedValue.Text is null ? null : Encoding.UTF8.GetBytes(placedValue.Text));
                continue;
            }
            if (placedValue.Integer is not ({ } number and >= 0 and <= int.MaxValue))
            {
                unroutable = $"partition column {placement.Column} is {placedValue.Text ?? "NULL"}, not a partition number ({AdditionalPlacement.Key})";
                return null;
            }
            partition = (int)number;
        }

        foreach (var (name, headerValue) in e.Headers)
        {
            // The connector's own headers (id, event_type, the placed ones) are what consumers deduplicate and route on:
            // a row header of the same name stays in the event's headers map but does not shadow them on the record.
            if (name == HeaderNames.Id || (asEvent && name == HeaderNames.EventType) || IsPlacedHeader(name))
                continue;
            headers.Add(name, Encoding.UTF8.GetBytes(headerValue));
        }

        var key = Encoding.UTF8.GetBytes(e.AggregateId);
        var record = new OutboxRecord(topic, key, headers, value) { EventId = e.Id, Partition = partition, Event = payloadEvent };
        return new MappingResult(record, null);
    }

    bool IsPlacedHeader(string name)
    {
        foreach (var placement in _format.Placements)
            if (placement.Target == PlacementTarget.Header && placement.HeaderName == name)
                return true;
        return false;
    }

    static Source SourceOf(TransactionInfo transaction) => new()
    {
        CommitLsn = transaction.CommitLsn,
        TransactionId = transaction.Xid,
        CommitTime = Timestamp.FromDateTime(DateTime.SpecifyKind(transaction.CommitTime, DateTimeKind.Utc)),
        Origin = transaction.Origin,
    };

    /// <summary>
    /// The dead letter of an event (<paramref name="source"/>: its record, or the dead letter the mapper made of it) in the
    /// given form: key = id, headers <c>id</c> and <c>error</c>, value = the event, without its payload, or none.
    /// </summary>
    public OutboxRecord DeadLetter(OutboxRecord source, string error, DeadLetterForm form)
    {
        if (form == DeadLetterForm.HeadersOnly)
        {
            var headers = new Headers
            {
                { HeaderNames.Id, Encoding.UTF8.GetBytes(source.EventId) },
                { HeaderNames.Error, Encoding.UTF8.GetBytes(error) },
            };
            return new OutboxRecord(DeadLetterTopic, Encoding.UTF8.GetBytes(source.EventId), headers, []) { EventId = source.EventId };
        }
        var evt = source.Event?.Clone() ?? OutboxEvent.Parser.ParseFrom(source.Value);
        if (form == DeadLetterForm.WithoutPayload)
            evt.Payload = ByteString.Empty;
        return DeadLetterOf(evt, error, "rejected").DeadLetter!;
    }

    /// <summary>The <c>error</c> header of a dead letter the mapper made, or null for an event's own record.</summary>
    public string? DeadLetterError(OutboxRecord record) =>
        record.Topic == DeadLetterTopic && record.Headers.TryGetLastBytes(HeaderNames.Error, out var error) ? Encoding.UTF8.GetString(error) : null;

    MappingResult DeadLetterOf(OutboxEvent evt, string error, string reason)
    {
        var headers = new Headers
        {
            { HeaderNames.Id, Encoding.UTF8.GetBytes(evt.Id) },
            { HeaderNames.Error, Encoding.UTF8.GetBytes(error) },
        };
        var record = new OutboxRecord(DeadLetterTopic, Encoding.UTF8.GetBytes(evt.Id), headers, evt.ToByteArray()) { EventId = evt.Id };
        return new MappingResult(null, record, reason);
    }

    /// <summary>
    /// Reads the row's headers object into <paramref name="into"/>, in order; a name given twice keeps its first place and
    /// its last value (as the event's headers map takes them). Non-string values travel as their JSON text.
    /// </summary>
    static string? ReadHeaders(byte[]? json, List<KeyValuePair<string, string>> into)
    {
        if (json is null)
            return null;
        try
        {
            // A forward-only reader over the UTF-8 text: no document is built for a few header strings per event.
            // As deep as jsonb allows: a value nested deeper than the reader's default (64) is still a header value.
            var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = 10_000 });
            reader.Read();
            switch (reader.TokenType)
            {
                case JsonTokenType.Null:
                    return null;
                case JsonTokenType.StartObject:
                    break;
                default:
                    return $"headers is a JSON {Kind(reader.TokenType)}, not an object";
            }
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var name = reader.GetString()!;
                reader.Read();
                if (reader.TokenType == JsonTokenType.String)
                {
                    Set(into, name, reader.GetString()!);
                    continue;
                }
                var start = (int)reader.TokenStartIndex;
                reader.Skip(); // to the end of an object or array value; a no-op for numbers and literals
                Set(into, name, Encoding.UTF8.GetString(json, start, (int)reader.BytesConsumed - start));
            }
            return null;
        }
        catch (JsonException e)
        {
            return $"headers is not valid JSON ({e.Message})";
        }
    }

    static void Set(List<KeyValuePair<string, string>> headers, string name, string value)
    {
        for (var i = 0; i < headers.Count; i++)
        {
            if (headers[i].Key == name)
            {
                headers[i] = new(name, value);
                return;
            }
        }
        headers.Add(new(name, value));
    }

    static string Kind(JsonTokenType token) => token switch
    {
        JsonTokenType.StartArray => "array",
        JsonTokenType.String => "string",
        JsonTokenType.Number => "number",
        JsonTokenType.True => "true",
        JsonTokenType.False => "false",
        _ => token.ToString().ToLowerInvariant(),
    };

    static string ContentType(PayloadKind kind, List<KeyValuePair<string, string>> headers)
    {
        if (kind == PayloadKind.Json)
            return ContentTypes.Json;
        foreach (var (name, value) in headers)
            if (string.Equals(name, HeaderNames.ContentType, StringComparison.OrdinalIgnoreCase) && value.Length > 0)
                return value;
        return ContentTypes.OctetStream;
    }

    static bool IsUtf8(ReadOnlySpan<byte> bytes) => System.Text.Unicode.Utf8.IsValid(bytes);
}
