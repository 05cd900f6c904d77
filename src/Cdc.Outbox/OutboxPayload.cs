using System.Diagnostics.CodeAnalysis;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Cdc.Contracts;
using Google.Protobuf;

namespace Cdc.Outbox;

/// <summary>
/// The body of an event: JSON (from an object or a JSON string) or bytes with their content type, such as an
/// already-serialized Protobuf message. Immutable; the bytes are what the consumer receives in
/// <c>OutboxEvent.payload</c> (for a jsonb column, as PostgreSQL renders the JSON).
/// </summary>
public sealed class OutboxPayload
{
    OutboxPayload(ReadOnlyMemory<byte> bytes, string contentType)
    {
        Bytes = bytes;
        ContentType = contentType;
        IsJson = ContentTypes.IsJson(contentType);
    }

    /// <summary>The payload as it is sent: UTF-8 JSON text, or the bytes as given.</summary>
    public ReadOnlyMemory<byte> Bytes { get; }

    /// <summary>A media type, e.g. <c>application/json</c> or <c>application/x-protobuf; messageType=shop.OrderPlaced</c>.</summary>
    public string ContentType { get; }

    /// <summary>Whether the content type is JSON (<c>application/json</c> or <c>*+json</c>): only these fit a jsonb column.</summary>
    public bool IsJson { get; }

    /// <summary>The object serialized with System.Text.Json (web defaults: camelCase names unless <paramref name="options"/> say otherwise).</summary>
    /// <remarks>Reflection-based serialization; in a trimmed or NativeAOT service use the <see cref="JsonTypeInfo{T}"/> overload.</remarks>
    [RequiresUnreferencedCode(ReflectionJson)]
    [RequiresDynamicCode(ReflectionJson)]
    public static OutboxPayload Json<T>(T value, JsonSerializerOptions? options = null) =>
        new(JsonSerializer.SerializeToUtf8Bytes(value, options ?? JsonSerializerOptions.Web), ContentTypes.Json);

    /// <summary>
    /// The object serialized with System.Text.Json metadata from a source-generated <c>JsonSerializerContext</c>: no
    /// reflection, so it works trimmed and under NativeAOT. For the same names as the other overload, declare the context
    /// with <c>[JsonSourceGenerationOptions(JsonSerializerDefaults.Web)]</c>.
    /// </summary>
    public static OutboxPayload Json<T>(T value, JsonTypeInfo<T> typeInfo)
    {
        ArgumentNullException.ThrowIfNull(typeInfo);
        return new(JsonSerializer.SerializeToUtf8Bytes(value, typeInfo), ContentTypes.Json);
    }

    internal const string ReflectionJson =
        "Serializes T with reflection-based System.Text.Json; use the overload taking a JsonTypeInfo<T> from a JsonSerializerContext when trimming or compiling to NativeAOT.";

    /// <summary>A JSON document given as text. It is checked here, so a typo fails in the service, not in the relay.</summary>
    public static OutboxPayload JsonText(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        var bytes = Encoding.UTF8.GetBytes(json);
        try
        {
            using var _ = JsonDocument.Parse(bytes);
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"The payload is not valid JSON: {e.Message}", nameof(json), e);
        }
        return new OutboxPayload(bytes, ContentTypes.Json);
    }

    /// <summary>Bytes as they are, e.g. a serialized Protobuf or Avro message; they need a bytea payload column.</summary>
    public static OutboxPayload FromBytes(ReadOnlyMemory<byte> bytes, string contentType = ContentTypes.OctetStream)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(contentType);
        return new OutboxPayload(bytes, contentType);
    }

    /// <summary>A Protobuf message serialized, with its full name in the content type so consumers can pick the parser.</summary>
    public static OutboxPayload Protobuf(IMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        return new OutboxPayload(message.ToByteArray(), $"{ContentTypes.Protobuf}; messageType={message.Descriptor.FullName}");
    }
}
