using Cdc.Positions;

namespace Cdc.Tests.Unit;

public class PositionTrackerTests
{
    [Fact]
    public void Confirms_a_transaction_only_when_all_its_events_are_acknowledged()
    {
        var tracker = new PositionTracker(100, 1_000_000);
        var t = tracker.Begin()!;
        tracker.Add(t, 10);
        tracker.Add(t, 10);
        tracker.Commit(t, 100);
        Assert.Equal(0UL, tracker.Confirmable);

        tracker.Acknowledge(t, 10);
        Assert.Equal(0UL, tracker.Confirmable);
        tracker.Acknowledge(t, 10);
        Assert.Equal(100UL, tracker.Confirmable);
        Assert.True(tracker.IsDrained);
    }

    [Fact]
    public void Out_of_order_acknowledgements_never_move_the_watermark_past_an_earlier_transaction()
    {
        var tracker = new PositionTracker(100, 1_000_000);
        var first = tracker.Begin()!;
        tracker.Add(first, 1);
        tracker.Commit(first, 100);
        var second = tracker.Begin()!;
        tracker.Add(second, 1);
        tracker.Commit(second, 200);

        tracker.Acknowledge(second, 1);
        Assert.Equal(0UL, tracker.Confirmable);

        tracker.Acknowledge(first, 1);
        Assert.Equal(200UL, tracker.Confirmable);
    }

    [Fact]
    public void An_uncommitted_transaction_holds_the_watermark_even_when_its_events_are_acknowledged()
    {
        var tracker = new PositionTracker(100, 1_000_000);
        var t = tracker.Begin()!;
        tracker.Add(t, 1);
        tracker.Acknowledge(t, 1);
        Assert.Equal(0UL, tracker.Confirmable);
        Assert.Equal(0UL, tracker.ConfirmableGiven(500));

        tracker.Commit(t, 300);
        Assert.Equal(300UL, tracker.Confirmable);
    }

    [Fact]
    public void An_event_that_is_never_acknowledged_holds_every_later_transaction_back()
    {
        var tracker = new PositionTracker(100, 1_000_000);
        var failed = tracker.Begin()!;
        tracker.Add(failed, 1);
        tracker.Commit(failed, 100);
        for (var i = 2; i <= 5; i++)
        {
            var t = tracker.Begin()!;
            tracker.Add(t, 1);
            tracker.Commit(t, (ulong)i * 100);
            tracker.Acknowledge(t, 1);
        }
        Assert.Equal(0UL, tracker.Confirmable);
        Assert.Equal(0UL, tracker.ConfirmableGiven(10_000));
    }

    [Fact]
    public void Transactions_without_outbox_events_advance_on_commit()
    {
        var tracker = new PositionTracker(100, 1_000_000);
        var t = tracker.Begin()!;
        tracker.Commit(t, 42);
        Assert.Equal(42UL, tracker.Confirmable);
    }

    [Fact]
    public void When_idle_the_received_position_is_confirmable_but_not_after_sealing()
    {
        var tracker = new PositionTracker(100, 1_000_000);
        Assert.Equal(700UL, tracker.ConfirmableGiven(700));
        Assert.Equal(700UL, tracker.ConfirmableGiven(600)); // never moves back

        tracker.Seal();
        Assert.Equal(700UL, tracker.ConfirmableGiven(900));
        Assert.Null(tracker.Begin());
    }

    [Fact]
    public void Sealing_still_lets_in_flight_acknowledgements_advance()
    {
        var tracker = new PositionTracker(100, 1_000_000);
        var t = tracker.Begin()!;
        tracker.Add(t, 1);
        tracker.Commit(t, 100);
        tracker.Seal();
        tracker.Acknowledge(t, 1);
        Assert.Equal(100UL, tracker.Confirmable);
    }

    [Fact]
    public async Task Waits_for_room_when_events_or_bytes_reach_their_bound()
    {
        var tracker = new PositionTracker(maxInFlightEvents: 2, maxInFlightBytes: 1_000);
        var t = tracker.Begin()!;
        tracker.Add(t, 1);
        Assert.True(tracker.WaitForRoomAsync(CancellationToken.None).IsCompleted);
        tracker.Add(t, 1);
        var wait = tracker.WaitForRoomAsync(CancellationToken.None);
        Assert.False(wait.IsCompleted);
        tracker.Acknowledge(t, 1);
        await wait.WaitAsync(TimeSpan.FromSeconds(5));

        var big = new PositionTracker(maxInFlightEvents: 100, maxInFlightBytes: 1_000);
        var b = big.Begin()!;
        big.Add(b, 1_000);
        var byBytes = big.WaitForRoomAsync(CancellationToken.None);
        Assert.False(byBytes.IsCompleted);
        big.Acknowledge(b, 1_000);
        await byBytes.WaitAsync(TimeSpan.FromSeconds(5));
    }

    [Fact]
    public void Concurrent_acknowledgements_end_at_the_last_commit()
    {
        var tracker = new PositionTracker(1_000_000, long.MaxValue);
        var transactions = new List<PositionTracker.Transaction>();
        for (var i = 1; i <= 1_000; i++)
        {
            var t = tracker.Begin()!;
            for (var e = 0; e < 10; e++)
                tracker.Add(t, 1);
            tracker.Commit(t, (ulong)i);
            transactions.Add(t);
        }
        Parallel.ForEach(transactions.SelectMany(t => Enumerable.Repeat(t, 10)).Reverse(), t => tracker.Acknowledge(t, 1));
        Assert.Equal(1_000UL, tracker.Confirmable);
        Assert.Equal(0, tracker.InFlightEvents);
        Assert.Equal(0, tracker.InFlightBytes);
    }

    [Fact]
    public async Task WhenConfirmable_completes_only_once_the_position_and_everything_before_it_is_acknowledged()
    {
        var tracker = new PositionTracker(100, 1_000_000);
        var first = tracker.Begin()!;
        tracker.Add(first, 1);
        tracker.Commit(first, 1);
        var second = tracker.Begin()!;
        tracker.Add(second, 1);
        tracker.Add(second, 1);
        tracker.Commit(second, 2);

        var waiting = tracker.WhenConfirmableAsync(2, CancellationToken.None);
        tracker.Acknowledge(second, 1);
        tracker.Acknowledge(second, 1);
        await Task.Delay(50);
        Assert.False(waiting.IsCompleted); // the first transaction still holds the watermark back
        tracker.Acknowledge(first, 1); // first moves the watermark to 1 and 2 at once
        await waiting.WaitAsync(TimeSpan.FromSeconds(5));

        var third = tracker.Begin()!;
        tracker.Add(third, 1);
        tracker.Commit(third, 3);
        var notYet = tracker.WhenConfirmableAsync(3, CancellationToken.None);
        await Task.Delay(50);
        Assert.False(notYet.IsCompleted);
        Assert.True(tracker.WhenConfirmableAsync(1, CancellationToken.None).IsCompletedSuccessfully);
        using var cancel = new CancellationTokenSource();
        var cancelled = tracker.WhenConfirmableAsync(3, cancel.Token);
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled);
        tracker.Acknowledge(third, 1);
        await notYet.WaitAsync(TimeSpan.FromSeconds(5));
    }
}
