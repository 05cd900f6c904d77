namespace Cdc.Samples.OrderSaga;

/// <summary>The aggregate types, one per service: the connector routes each to its own topic.</summary>
public static class AggregateTypes
{
    public const string Order = "order";
    public const string Stock = "stock";
    public const string Payment = "payment";
}

/// <summary>Event types of the saga (the outbox's <c>event_type</c>).</summary>
public static class EventTypes
{
    public const string OrderPlaced = nameof(OrderPlaced);
    public const string OrderConfirmed = nameof(OrderConfirmed);
    public const string OrderCancelled = nameof(OrderCancelled);
    public const string StockReserved = nameof(StockReserved);
    public const string StockRejected = nameof(StockRejected);
    public const string StockReleased = nameof(StockReleased);
    public const string PaymentCaptured = nameof(PaymentCaptured);
    public const string PaymentFailed = nameof(PaymentFailed);
}

// Payloads, serialized as JSON. Every event's aggregate id is the order id: one order's events keep their order per topic.
public sealed record OrderPlaced(Guid OrderId, string Customer, string Sku, int Quantity, long AmountCents);
public sealed record OrderConfirmed(Guid OrderId);
public sealed record OrderCancelled(Guid OrderId, string Reason);
public sealed record StockReserved(Guid OrderId, string Sku, int Quantity, long AmountCents);
public sealed record StockRejected(Guid OrderId, string Sku, int Quantity, string Reason);
public sealed record StockReleased(Guid OrderId, string Sku, int Quantity);
public sealed record PaymentCaptured(Guid OrderId, long AmountCents);
public sealed record PaymentFailed(Guid OrderId, long AmountCents, string Reason);

/// <summary>The saga's topics, from the connectors' topic template (e.g. <c>outbox.event.{aggregate_type}</c>).</summary>
public sealed class SagaTopics(string topicTemplate)
{
    public string Orders { get; } = topicTemplate.Replace("{aggregate_type}", AggregateTypes.Order);
    public string Stock { get; } = topicTemplate.Replace("{aggregate_type}", AggregateTypes.Stock);
    public string Payments { get; } = topicTemplate.Replace("{aggregate_type}", AggregateTypes.Payment);

    public IReadOnlyList<string> All => [Orders, Stock, Payments];
}
