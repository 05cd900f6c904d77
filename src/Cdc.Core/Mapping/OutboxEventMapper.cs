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
        var evt = new OutboxEvent
        {
            Id = row.Id,
            AggregateType = row.AggregateType ?? "",
            AggregateId = row.AggregateId ?? "",
            EventType = row.EventType ?? "",
            Payload = row.Payload is null ? ByteString.Empty : UnsafeByteOperations.UnsafeWrap(row.Payload),
            CreatedAt = row.CreatedAt is { } created ? Timestamp.FromDateTime(DateTime.SpecifyKind(created, DateTimeKind.Utc)) : null,
            Source = SourceOf(transaction),
        };
        if (row.ReadError is { } readError)
        {
            if (evt.Id.Length == 0)
                evt.Id = $"lsn:{transaction.CommitLsn:X}";
            return DeadLetterOf(evt, readError, "unreadable");
        }

        var headersError = ReadHeaders(row.Headers, evt.Headers);
        evt.PayloadContentType = ContentType(row.PayloadKind, evt.Headers);
        if (headersError is not null)
            return DeadLetterOf(evt, headersError, "headers");
        if (row.PayloadKind == PayloadKind.Bytes && ContentTypes.IsJson(evt.PayloadContentType) && !IsUtf8(row.Payload))
            return DeadLetterOf(evt, $"payload is bytea with content-type {evt.PayloadContentType} but is not valid UTF-8", "payload");
        return Route(evt, row.AggregateType, row.Placed, row.Payload);
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
        return Route(evt, evt.AggregateType.Length == 0 ? null : evt.AggregateType,
            _format.Placements.Count == 0 ? null : _format.PlacedOf(evt),
            _format.Value == ValueFormat.Payload ? evt.Payload.ToByteArray() : null);
    }

    /// <param name="placed">The placed columns' values (null: none placed); an absent entry places nothing.</param>
    /// <param name="payload">The value in Payload format (jsonb: the JSON text; bytea: the bytes).</param>
    MappingResult Route(OutboxEvent evt, string? aggregateType, PlacedValue?[]? placed, byte[]? payload)
    {
        var topic = router.Route(aggregateType, out var routeError);
        if (topic is null)
            return DeadLetterOf(evt, routeError!, "unroutable");

        var asEvent = _format.Value == ValueFormat.OutboxEvent;
        var headers = new Headers { { HeaderNames.Id, Encoding.UTF8.GetBytes(evt.Id) } };
        if (asEvent)
            headers.Add(HeaderNames.EventType, Encoding.UTF8.GetBytes(evt.EventType));

        int? partition = null;
        var placements = _format.Placements;
        for (var i = 0; i < placements.Count && placed is not null; i++)
        {
            if (placed[i] is not { } value)
                continue;
            var placement = placements[i];
            if (placement.Target == PlacementTarget.Header)
            {
                // A NULL column is a header without a value, as Debezium's router places it.
                headers.Add(placement.HeaderName, value.Text is null ? null : Encoding.UTF8.GetBytes(value.Text));
                continue;
            }
            if (value.Integer is not ({ } number and >= 0 and <= int.MaxValue))
                return DeadLetterOf(evt, $"partition column {placement.Column} is {value.Text ?? "NULL"}, not a partition number " +
                                         $"({AdditionalPlacement.Key})", "unroutable");
            partition = (int)number;
        }

        foreach (var (name, value) in evt.Headers)
        {
            // The connector's own headers (id, event_type, the placed ones) are what consumers deduplicate and route on:
            // a row header of the same name stays in the event's headers map but does not shadow them on the record.
            if (name == HeaderNames.Id || (asEvent && name == HeaderNames.EventType) || IsPlacedHeader(name))
                continue;
            headers.Add(name, Encoding.UTF8.GetBytes(value));
        }

        var key = Encoding.UTF8.GetBytes(evt.AggregateId);
        var record = asEvent
            ? new OutboxRecord(topic, key, headers, evt.ToByteArray()) { EventId = evt.Id, Partition = partition }
            : new OutboxRecord(topic, key, headers, payload ?? []) { EventId = evt.Id, Partition = partition, Event = evt };
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

    /// <summary>Reads the row's headers object into <paramref name="into"/>; non-string values travel as their JSON text.</summary>
    static string? ReadHeaders(byte[]? json, IDictionary<string, string> into)
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
                    into[name] = reader.GetString()!;
                    continue;
                }
                var start = (int)reader.TokenStartIndex;
                reader.Skip(); // to the end of an object or array value; a no-op for numbers and literals
                into[name] = Encoding.UTF8.GetString(json, start, (int)reader.BytesConsumed - start);
            }
            return null;
        }
        catch (JsonException e)
        {
            return $"headers is not valid JSON ({e.Message})";
        }
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

    static string ContentType(PayloadKind kind, IDictionary<string, string> headers)
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
