using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Cdc.Outbox;

namespace Cdc.Tests.Unit;

/// <summary>The writer's JSON payloads with source-generated metadata (what a trimmed or NativeAOT service uses).</summary>
public class OutboxPayloadTests
{
    [Fact]
    public void Source_generated_metadata_gives_the_same_bytes_as_the_reflection_overload()
    {
        var placed = new OrderPlaced(42, 19.5m, ["a", "b"]);

        var generated = OutboxPayload.Json(placed, PayloadJsonContext.Default.OrderPlaced);
        var reflected = OutboxPayload.Json(placed);

        Assert.Equal("""{"orderId":42,"total":19.5,"skus":["a","b"]}""", Encoding.UTF8.GetString(generated.Bytes.Span));
        Assert.Equal(reflected.Bytes.ToArray(), generated.Bytes.ToArray());
        Assert.Equal(Cdc.Contracts.ContentTypes.Json, generated.ContentType);
        Assert.True(generated.IsJson);
    }

    [Fact]
    public void A_message_built_from_source_generated_metadata_carries_the_json_payload()
    {
        var message = OutboxMessage.Json("order", "o-1", "OrderPlaced", new OrderPlaced(1, 2m, []), PayloadJsonContext.Default.OrderPlaced);

        Assert.Equal("""{"orderId":1,"total":2,"skus":[]}""", Encoding.UTF8.GetString(message.Payload.Bytes.Span));
        Assert.Equal("order", message.AggregateType);
        Assert.Throws<ArgumentNullException>(() => OutboxPayload.Json(new OrderPlaced(1, 2m, []), (System.Text.Json.Serialization.Metadata.JsonTypeInfo<OrderPlaced>)null!));
    }

    public sealed record OrderPlaced(int OrderId, decimal Total, string[] Skus);
}

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web)]
[JsonSerializable(typeof(OutboxPayloadTests.OrderPlaced))]
partial class PayloadJsonContext : JsonSerializerContext;
