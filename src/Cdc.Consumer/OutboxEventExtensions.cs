using System.Text;
using System.Text.Json;
using Cdc.Contracts;
using Cdc.Outbox.V1;
using Confluent.Kafka;

namespace Cdc.Consumer;

/// <summary>Reading an event's payload as JSON or bytes.</summary>
public static class OutboxEventExtensions
{
    /// <summary>Whether the payload is JSON (<c>application/json</c> or <c>*+json</c>).</summary>
    public static bool HasJsonPayload(this OutboxEvent evt) => ContentTypes.IsJson(evt.PayloadContentType);

    /// <summary>The payload as a JSON document (dispose it).</summary>
    public static JsonDocument PayloadAsJsonDocument(this OutboxEvent evt)
    {
        EnsureJson(evt);
        return JsonDocument.Parse(evt.Payload.Memory);
    }

    /// <summary>The payload deserialized with System.Text.Json (web defaults, as the writer's, unless <paramref name="options"/> are given).</summary>
    public static T PayloadAs<T>(this OutboxEvent evt, JsonSerializerOptions? options = null)
    {
        EnsureJson(evt);
        return JsonSerializer.Deserialize<T>(evt.Payload.Span, options ?? JsonSerializerOptions.Web)
               ?? throw new InvalidDataException($"Event {evt.Id} ({evt.EventType}) has a null JSON payload.");
    }

    /// <summary>The payload bytes as they were written (e.g. a serialized Protobuf message), without copying.</summary>
    public static ReadOnlyMemory<byte> PayloadBytes(this OutboxEvent evt) => evt.Payload.Memory;

    static void EnsureJson(OutboxEvent evt)
    {
        if (!evt.HasJsonPayload())
            throw new InvalidOperationException($"Event {evt.Id} ({evt.EventType}) has a {evt.PayloadContentType} payload, not JSON; read it with PayloadBytes().");
    }
}

/// <summary>Reading the record headers the connector sets (their names are <see cref="HeaderNames"/>).</summary>
public static class OutboxRecordHeaders
{
    /// <summary>The <c>id</c> header (the event id consumers deduplicate on), or null.</summary>
    public static string? EventId(this Headers? headers) => headers?.TryGetLastBytes(HeaderNames.Id, out var bytes) == true ? Encoding.UTF8.GetString(bytes) : null;

    /// <summary>
    /// The record's event id. The contract puts the same value in the <c>id</c> header and the event's <c>id</c> field;
    /// the field is read, because a row whose own headers have an "id" entry adds a second <c>id</c> header after the
    /// connector's, and clients read the last one.
    /// </summary>
    public static string EventId<TKey>(this ConsumeResult<TKey, OutboxEvent> result) =>
        result.Message.Value.Id is { Length: > 0 } id ? id : result.Message.Headers.EventId() ?? "";
}
