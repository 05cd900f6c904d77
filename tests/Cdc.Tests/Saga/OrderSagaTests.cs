using System.Diagnostics;
using Cdc.Samples.OrderSaga;
using Cdc.Tests.Fixtures;
using Npgsql;
using Xunit.Abstractions;

namespace Cdc.Tests.Saga;

/// <summary>
/// Both ends of the pipe under failure: hundreds of orders through a choreographed saga of three services, each with
/// its own outbox, connector and inbox, while every consumer crashes once and one connector is SIGKILLed.
/// </summary>
public class OrderSagaTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    const int OrderCount = 200;
    static readonly string[] Skus = ["sku-a", "sku-b", "sku-c", "sku-d"];
    const int InitialStock = 90; // per SKU: about half the demand, so some orders are rejected for stock

    [Fact]
    public async Task Every_order_ends_stock_matches_the_confirmed_orders_and_no_handler_runs_twice_despite_crashes()
    {
        var servers = await fixture.GetAsync();
        var watch = Stopwatch.StartNew();
        await using var saga = await SagaHarness.CreateAsync(servers, output);
        foreach (var sku in Skus)
            await saga.Inventory.AddStockAsync(sku, InitialStock);
        await saga.StartConnectorsAsync();
        await saga.StartConsumersAsync();
        output.WriteLine($"{watch.Elapsed}: connectors streaming, consumers started");

        // Orders arrive over a few seconds; the failures happen while events are in flight.
        var random = new Random(20_240_601);
        var placed = new List<Guid>();
        for (var i = 0; i < OrderCount; i++)
        {
            var amount = random.NextInt64(1_000, 100_000);
            if (i % 8 == 3)
                amount = amount / 10 * 10 + 7; // declined by the payments service
            else if (amount % 10 == 7)
                amount++;
            placed.Add(await saga.Orders.PlaceOrderAsync($"customer-{i % 17}", Skus[i % Skus.Length], 1 + random.Next(3), amount));
            switch (i)
            {
                case 40: await saga.Consumer("inventory").CrashAndRestartAsync(); break;
                case 80:
                    saga.KillInventoryConnector();
                    output.WriteLine($"{watch.Elapsed}: inventory connector SIGKILLed and restarted");
                    break;
                case 120: await saga.Consumer("payments").CrashAndRestartAsync(); break;
                case 160: await saga.Consumer("orders").CrashAndRestartAsync(); break;
            }
            await Task.Delay(25);
        }
        output.WriteLine($"{watch.Elapsed}: {OrderCount} orders placed");

        // Done when no order is pending and no stock is merely reserved (the last compensations have run).
        var deadline = DateTime.UtcNow.AddSeconds(120);
        while (await ScalarAsync<long>($"""
                   SELECT (SELECT count(*) FROM "{saga.Orders.Schema}".orders WHERE status = 'pending')
                        + (SELECT count(*) FROM "{saga.Inventory.Schema}".reservations WHERE status = 'reserved')
                   """) > 0)
        {
            saga.AssertConnectorsRunning();
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException("The saga did not finish within 120 s");
            await Task.Delay(250);
        }
        output.WriteLine($"{watch.Elapsed}: every order ended");

        // 1. Every order is confirmed or cancelled, for the reason the rules give.
        var orders = await QueryAsync($"""SELECT id, amount_cents, status, coalesce(reason, '') FROM "{saga.Orders.Schema}".orders""",
            r => (Id: r.GetGuid(0), Amount: r.GetInt64(1), Status: r.GetString(2), Reason: r.GetString(3)));
        Assert.Equal(placed.Order(), orders.Select(o => o.Id).Order());
        Assert.All(orders, o => Assert.Contains(o.Status, new[] { OrdersService.Confirmed, OrdersService.Cancelled }));
        Assert.All(orders.Where(o => o.Status == OrdersService.Confirmed), o => Assert.False(PaymentsService.IsDeclined(o.Amount)));
        Assert.All(orders.Where(o => o.Reason == "payment failed"), o => Assert.True(PaymentsService.IsDeclined(o.Amount)));
        var confirmed = orders.Count(o => o.Status == OrdersService.Confirmed);
        var paymentFailed = orders.Count(o => o.Reason == "payment failed");
        var outOfStock = orders.Count(o => o.Reason == "out of stock");
        Assert.Equal(OrderCount, confirmed + paymentFailed + outOfStock);
        Assert.True(confirmed > 0 && paymentFailed > 0 && outOfStock > 0, $"confirmed {confirmed}, payment failed {paymentFailed}, out of stock {outOfStock}");

        // 2. Stock is exactly what the confirmed orders took: failed payments' reservations were released.
        var taken = await QueryAsync($"""
            SELECT s.sku, s.available, coalesce((SELECT sum(o.quantity) FROM "{saga.Orders.Schema}".orders o
                                                 WHERE o.sku = s.sku AND o.status = 'confirmed'), 0)::int
            FROM "{saga.Inventory.Schema}".stock s
            """, r => (Sku: r.GetString(0), Available: r.GetInt32(1), Confirmed: r.GetInt32(2)));
        Assert.All(taken, s => Assert.Equal(InitialStock - s.Confirmed, s.Available));
        Assert.Equal(confirmed, await ScalarAsync<long>($"""SELECT count(*) FROM "{saga.Inventory.Schema}".reservations WHERE status = 'committed'"""));
        Assert.Equal(paymentFailed, await ScalarAsync<long>($"""SELECT count(*) FROM "{saga.Inventory.Schema}".reservations WHERE status = 'released'"""));
        Assert.Equal(confirmed, await ScalarAsync<long>($"""SELECT count(*) FROM "{saga.Payments.Schema}".payments WHERE status = 'captured'"""));

        // 3. No handler ran twice for one event id, among the runs that committed.
        var twice = await QueryAsync($"SELECT consumer, event_id, count(*) FROM {saga.AuditTable} GROUP BY 1, 2 HAVING count(*) > 1",
            r => $"{r.GetString(0)} ran {r.GetString(1)} {r.GetInt64(2)} times");
        Assert.Empty(twice);
        // ...and each consumer saw every event it subscribes to: inventory every OrderPlaced, payments every StockReserved.
        Assert.Equal((long)OrderCount, await ScalarAsync<long>($"SELECT count(*) FROM {saga.AuditTable} WHERE consumer = 'inventory' AND event_type = 'OrderPlaced'"));
        Assert.Equal((long)(confirmed + paymentFailed),
            await ScalarAsync<long>($"SELECT count(*) FROM {saga.AuditTable} WHERE consumer = 'payments' AND event_type = 'StockReserved'"));

        // 4. The failures did cause redeliveries, and the inboxes absorbed them; nothing was dead-lettered.
        foreach (var name in new[] { "orders", "inventory", "payments" })
        {
            var consumer = saga.Consumer(name);
            output.WriteLine($"consumer {name}: {consumer.Instances} instances, {consumer.Processed} processed, {consumer.Duplicates} redeliveries skipped");
            Assert.Equal(2, consumer.Instances);
            Assert.Equal(0, consumer.DeadLettered);
        }
        var uncommittedInvocations = saga.HandlerInvocations.Values.Sum() - await ScalarAsync<long>($"SELECT count(*) FROM {saga.AuditTable}");
        output.WriteLine($"handler invocations that did not commit (interrupted by a crash): {uncommittedInvocations}");
        Assert.True(new[] { "orders", "inventory", "payments" }.Sum(n => saga.Consumer(n).Duplicates) > 0, "no redelivery happened: the crashes tested nothing");
        foreach (var topic in saga.DeadLetterTopics)
            Assert.Empty(KafkaReader.ReadAll(servers.KafkaBootstrapServers, topic));
        output.WriteLine($"{watch.Elapsed}: checked");

        async Task<T> ScalarAsync<T>(string sql) => await Sql.ScalarAsync<T>(servers.PostgresConnectionString, sql);

        async Task<List<T>> QueryAsync<T>(string sql, Func<NpgsqlDataReader, T> read)
        {
            await using var command = saga.DataSource.CreateCommand(sql);
            await using var reader = await command.ExecuteReaderAsync();
            var rows = new List<T>();
            while (await reader.ReadAsync())
                rows.Add(read(reader));
            return rows;
        }
    }
}
