using Cdc.Mapping;

namespace Cdc.Tests.Unit;

public class TopicRouterTests
{
    [Theory]
    [InlineData("outbox.event.{aggregate_type}", "order", "outbox.event.order")]
    [InlineData("{aggregate_type}", "Order_v2-x", "Order_v2-x")]
    [InlineData("{aggregate_type}.events", "customer", "customer.events")]
    [InlineData("all-events", "customer", "all-events")]
    public void Replaces_the_aggregate_type(string template, string aggregateType, string expected)
    {
        var router = new TopicRouter(template);
        Assert.Equal(expected, router.Route(aggregateType, out var error));
        Assert.Null(error);
    }

    [Theory]
    [InlineData(null, "aggregate_type is NULL")]
    [InlineData("", "does not make a valid Kafka topic name")]
    [InlineData("order/placed", "does not make a valid Kafka topic name")]
    [InlineData("ordér", "does not make a valid Kafka topic name")]
    public void Rejects_what_cannot_be_routed(string? aggregateType, string reason)
    {
        var router = new TopicRouter("{aggregate_type}");
        Assert.Null(router.Route(aggregateType, out var error));
        Assert.Contains(reason, error);
    }

    [Fact]
    public void Rejects_topics_longer_than_kafka_allows()
    {
        var router = new TopicRouter("outbox.event.{aggregate_type}");
        Assert.Null(router.Route(new string('a', 249), out var error));
        Assert.NotNull(error);
        Assert.NotNull(router.Route(new string('a', 249 - "outbox.event.".Length), out _));
    }
}
