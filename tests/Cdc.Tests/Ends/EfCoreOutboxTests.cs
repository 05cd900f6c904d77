using Cdc.Outbox;
using Cdc.Tests.Fixtures;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;

namespace Cdc.Tests.Ends;

/// <summary>
/// How a service on EF Core writes its outbox: the writer joins the DbContext's transaction, so the business row and
/// the event commit, or roll back, together.
/// </summary>
public class EfCoreOutboxTests(ServersFixture fixture) : IClassFixture<ServersFixture>
{
    // EF caches one model per context type, so the table name is fixed for the process (and unique per run).
    static readonly string OrdersTable = TestNames.Unique("ef") + "_orders";

    [Fact]
    public async Task The_business_row_and_the_event_commit_together_and_roll_back_together()
    {
        var servers = await fixture.GetAsync();
        var outboxOptions = new OutboxWriterOptions { Table = $"public.{TestNames.Unique("ef")}_outbox" };
        await Sql.ExecuteAsync(servers.PostgresConnectionString, OutboxSchema.CreateTableSql(outboxOptions));
        var writer = new OutboxWriter(outboxOptions);
        await using (var setup = new ShopContext(servers.PostgresConnectionString))
            await setup.Database.ExecuteSqlRawAsync(setup.Database.GenerateCreateScript());

        async Task<Guid> PlaceOrderAsync(string customer, bool commit)
        {
            await using var db = new ShopContext(servers.PostgresConnectionString);
            await using var tx = await db.Database.BeginTransactionAsync();
            var order = new Order { Id = Guid.CreateVersion7(), Customer = customer, Total = 42.5m };
            db.Orders.Add(order);
            await db.SaveChangesAsync();
            await db.AddToOutboxAsync(writer, OutboxMessage.Json("order", order.Id.ToString(), "OrderPlaced", new { order.Id, order.Total }));
            if (commit)
                await tx.CommitAsync();
            else
                await tx.RollbackAsync();
            return order.Id;
        }

        var committed = await PlaceOrderAsync("ada", commit: true);
        var rolledBack = await PlaceOrderAsync("bob", commit: false);

        await using var check = new ShopContext(servers.PostgresConnectionString);
        Assert.Equal([committed], await check.Orders.Select(o => o.Id).ToListAsync());
        Assert.Equal(1L, await Sql.ScalarAsync<long>(servers.PostgresConnectionString,
            $"SELECT count(*) FROM {outboxOptions.Table} WHERE aggregate_id = $1", committed.ToString()));
        Assert.Equal(0L, await Sql.ScalarAsync<long>(servers.PostgresConnectionString,
            $"SELECT count(*) FROM {outboxOptions.Table} WHERE aggregate_id = $1", rolledBack.ToString()));
    }

    public sealed class Order
    {
        public Guid Id { get; set; }
        public string Customer { get; set; } = "";
        public decimal Total { get; set; }
    }

    sealed class ShopContext(string connectionString) : DbContext
    {
        public DbSet<Order> Orders => Set<Order>();

        protected override void OnConfiguring(DbContextOptionsBuilder options) => options.UseNpgsql(connectionString);

        protected override void OnModelCreating(ModelBuilder model) => model.Entity<Order>().ToTable(OrdersTable);
    }
}

/// <summary>The one EF-specific step, kept out of Cdc.Outbox: the DbContext's current transaction as Npgsql's.</summary>
public static class DbContextOutboxExtensions
{
    public static Task AddToOutboxAsync(this DbContext db, OutboxWriter writer, OutboxMessage message, CancellationToken ct = default)
    {
        var transaction = db.Database.CurrentTransaction?.GetDbTransaction() as NpgsqlTransaction
                          ?? throw new InvalidOperationException(
                              "Begin a transaction first (db.Database.BeginTransactionAsync()): the event must commit with the change it describes.");
        return writer.AddAsync(transaction, message, ct);
    }
}
