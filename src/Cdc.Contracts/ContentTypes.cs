namespace Cdc.Contracts;

/// <summary>Media types of <c>OutboxEvent.payload_content_type</c>.</summary>
public static class ContentTypes
{
    /// <summary>A jsonb payload, or JSON bytes.</summary>
    public const string Json = "application/json";

    /// <summary>Bytes whose type nobody named.</summary>
    public const string OctetStream = "application/octet-stream";

    /// <summary>A serialized Protobuf message; the writer adds <c>; messageType=&lt;full name&gt;</c>.</summary>
    public const string Protobuf = "application/x-protobuf";

    /// <summary>Whether the media type (parameters ignored) is JSON: <c>application/json</c> or any <c>*+json</c>.</summary>
    public static bool IsJson(string? contentType)
    {
        var mediaType = (contentType ?? "").Split(';')[0].Trim();
        return mediaType.Equals(Json, StringComparison.OrdinalIgnoreCase)
               || mediaType.EndsWith("+json", StringComparison.OrdinalIgnoreCase);
    }
}
