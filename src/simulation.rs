//! Wires a run together: catalogue, shoppers, clock, pipeline and sink.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::config::Settings;
use crate::metrics::{Health, PipelineMetrics, SimulationMetrics};
use crate::model::{Catalogue, CatalogueError, Event, ShopRules, Timestamp};
use crate::pipeline::{self, CHANNEL_CAPACITY, Delivery, Message};
use crate::shoppers::{
    Active, Currency, Population, ShopContext, Shopper, raw_activity, run_shopper,
};
use crate::sinks::{Sink, SinkError, TopicCounts, describe};
use crate::state::{Identity, SinkState, Snapshot, StateStore};
use prometheus::Registry;

/// How often the sink hears the clock's watermark (real time).
const WATERMARK_INTERVAL: Duration = Duration::from_millis(500);
/// How often progress is logged (real time).
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// The async runtime a simulation runs on: one worker thread per core but one, which is left
/// to the sink's thread and the Kafka client's threads (at least one worker).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.saturating_sub(1).max(1))
        .thread_name("shoppers")
        .enable_all()
        .build()
}

/// The parameters of one run that are not settings.
#[derive(Debug)]
pub struct RunPlan {
    /// The seed in force (given, or drawn and logged).
    pub seed: u64,
    /// Simulated end, exclusive; `None` runs until shutdown.
    pub end: Option<Timestamp>,
    /// Keep a virtual clock from passing the wall clock: race through the past, then run in
    /// real time (backfill, then live).
    pub pace_to_wall_clock: bool,
    /// Where the run's state is saved, and what it resumes from; `None`: not saved.
    pub saving: Option<Saving>,
}

/// Saving the run's state: where, how often, and what it resumes from.
#[derive(Debug)]
pub struct Saving {
    pub store: StateStore,
    /// Real time between two saves.
    pub interval: Duration,
    pub identity: Identity,
    /// The state the run resumes from; `None` starts afresh.
    pub restored: Option<Snapshot>,
}

/// What a run produced.
#[derive(Debug)]
pub struct Summary {
    pub start: Timestamp,
    /// The simulated instant reached.
    pub reached: Timestamp,
    pub generated: TopicCounts,
    pub delivered: TopicCounts,
    pub sink_error: Option<SinkError>,
}

impl Summary {
    /// Events generated and not delivered.
    pub fn undelivered(&self) -> u64 {
        self.generated
            .iter()
            .zip(self.delivered)
            .map(|(g, d)| g.saturating_sub(d))
            .sum()
    }

    /// Whether every generated event was delivered and the sink reported no failure.
    pub fn is_complete(&self) -> bool {
        self.sink_error.is_none() && self.undelivered() == 0
    }
}

/// The instruments a run reports through: its metrics and its health.
#[derive(Debug, Clone)]
pub struct Instruments {
    pub pipeline: PipelineMetrics,
    pub simulation: SimulationMetrics,
    pub health: Arc<Health>,
}

impl Instruments {
    /// Instruments registered into `registry`.
    pub fn register(registry: &Registry, health: Arc<Health>) -> prometheus::Result<Self> {
        Ok(Self {
            pipeline: PipelineMetrics::register(registry)?,
            simulation: SimulationMetrics::register(registry)?,
            health,
        })
    }

    /// Instruments nobody reads, for runs embedded in tests and benchmarks.
    pub fn detached() -> Self {
        Self::register(&Registry::new(), Health::new())
            .expect("a fresh registry accepts every metric")
    }
}

/// The customer ids of this replica's shoppers: every N-th from I + 1.
pub fn shopper_ids(settings: &Settings) -> impl Iterator<Item = i64> + use<> {
    let (index, count) = (i64::from(settings.shard.0), i64::from(settings.shard.1));
    (0..i64::from(settings.shoppers)).map(move |k| 1 + index + k * count)
}

/// The shared state of all shoppers, built from the settings.
pub fn shop_context(settings: &Settings, seed: u64) -> Result<ShopContext, CatalogueError> {
    let catalogue = Catalogue::generate(seed, settings.products, settings.popularity_exponent)?
        .with_repricing(settings.reprice_probability)?;
    // One string for the life of the process, shared by every event.
    let currency: &'static str = Box::leak(settings.shop.currency.clone().into_boxed_str());
    let rules = ShopRules {
        currency,
        tax_rate: settings.shop.tax_rate,
        shipping_fee: settings.shop.shipping_fee,
        free_shipping_threshold: settings.shop.free_shipping_threshold,
    };
    Ok(ShopContext {
        catalogue,
        currencies: settings
            .shop
            .currencies
            .iter()
            .map(|c| Currency {
                rules: ShopRules {
                    currency: Box::leak(c.code.clone().into_boxed_str()),
                    shipping_fee: rules.shipping_fee.convert(c.rate),
                    free_shipping_threshold: rules.free_shipping_threshold.convert(c.rate),
                    ..rules.clone()
                },
                rate: c.rate,
                share: c.share,
            })
            .collect(),
        rules,
        // Each of N replicas simulates `shoppers` shoppers: together they make the rate.
        mean_session_gap_micros: f64::from(settings.shoppers) * f64::from(settings.shard.1)
            / settings.rate.per_second()
            * 1e6,
        traffic: settings.traffic.profile.clone(),
        activity_shape: settings.traffic.activity_shape,
        activity_mean: shopper_ids(settings)
            .map(|id| raw_activity(seed, id, settings.traffic.activity_shape))
            .sum::<f64>()
            / f64::from(settings.shoppers),
        discount_probability: settings.shop.discount_probability,
        seed,
        mean_lifetime_micros: settings
            .traffic
            .customer_lifetime
            .map(|d| d.as_micros() as f64),
        customer_id_stride: i64::from(settings.shoppers) * i64::from(settings.shard.1),
    })
}

/// Runs a simulation on `clock` into `sink` until the plan's end or `shutdown`, and returns
/// what was generated and delivered. The sink is closed before this returns.
pub async fn run(
    settings: &Settings,
    plan: RunPlan,
    ctx: ShopContext,
    clock: Clock,
    sink: Box<dyn Sink>,
    shutdown: CancellationToken,
    instruments: Instruments,
) -> Summary {
    let start = clock.now();
    let (store, saving, restored) = match plan.saving {
        Some(Saving {
            store,
            interval,
            identity,
            restored,
        }) => (Some(store), Some((interval, identity)), restored),
        None => (None, None, None),
    };
    let saves = restored.as_ref().map_or(0, |r| r.saves);
    let Instruments {
        pipeline: pipeline_metrics,
        simulation: metrics,
        health,
    } = instruments;
    metrics
        .target_rate
        .set(settings.rate.per_second() / f64::from(settings.shard.1));
    let ctx = Arc::new(ctx);
    // The pipeline's counters are the one count of generated events; this run's share is what
    // they gain from here.
    let counted = pipeline_metrics.clone();
    let before = counted.generated();
    let generated_since = move || -> TopicCounts {
        let now = counted.generated();
        std::array::from_fn(|i| now[i] - before[i])
    };
    let (outbox, inbox) = mpsc::channel::<Message>(CHANNEL_CAPACITY);
    // The sink runs on a thread of its own, named so it shows in profiles and `top -H`.
    let (done, sink_result) = tokio::sync::oneshot::channel();
    let spawned = {
        let (stop, health) = (shutdown.clone(), Arc::clone(&health));
        std::thread::Builder::new()
            .name("sink".into())
            .spawn(move || {
                let drained = pipeline::drain(sink, inbox, pipeline_metrics, health, stop, store);
                let _ = done.send(drained);
            })
    };
    if let Err(e) = spawned {
        return Summary {
            start,
            reached: start,
            generated: [0; 4],
            delivered: [0; 4],
            sink_error: Some(SinkError::Thread(format!(
                "cannot start the sink thread: {e}"
            ))),
        };
    }

    // Reference data first: every product exists before any order names it. Replicas share
    // the catalogue (same seed); replica 0 publishes it, once: a resumed run already has.
    if settings.shard.0 == 0 && restored.is_none() {
        let catalogue = ctx
            .catalogue
            .publish(start, plan.seed, ctx.rules.currency)
            .into_iter()
            .map(Event::Product)
            .collect();
        let _ = outbox
            .send(Message::Events(catalogue, tokio::time::Instant::now()))
            .await;
    }

    let population = Arc::new(match restored {
        Some(snapshot) => Population::new(
            snapshot.shoppers,
            Timestamp::from_micros(snapshot.repriced_through),
        ),
        None => Population::new(
            shopper_ids(settings)
                .map(|id| Shopper::new(plan.seed, id, start, &ctx))
                .collect(),
            start,
        ),
    });
    let shoppers = TaskTracker::new();
    // Holding a timer keeps a virtual clock still until every shopper has joined.
    let hold = clock.timer();
    for index in 0..population.len() {
        shoppers.spawn(run_shopper(
            Arc::clone(&population),
            index,
            Arc::clone(&ctx),
            clock.timer(),
            plan.end,
            outbox.clone(),
            shutdown.clone(),
            Active::new(&metrics.shoppers_active),
        ));
    }
    if settings.shard.0 == 0 && settings.reprice_probability > 0.0 {
        shoppers.spawn(reprice(
            Arc::clone(&ctx),
            Arc::clone(&population),
            clock.timer(),
            plan.end,
            outbox.clone(),
            shutdown.clone(),
        ));
    }
    let pacer_stop = CancellationToken::new();
    let pacer = (plan.pace_to_wall_clock && clock.is_virtual()).then(|| {
        tokio::spawn(pace(
            clock.clone(),
            clock.timer(),
            plan.end,
            pacer_stop.clone(),
        ))
    });
    drop(hold);
    shoppers.close();
    health.set_shoppers_running(true);

    let ticker_stop = CancellationToken::new();
    let ticker = tokio::spawn(tick(
        clock.clone(),
        outbox.clone(),
        generated_since.clone(),
        metrics.clone(),
        ticker_stop.clone(),
    ));
    let saver = saving.as_ref().map(|(interval, identity)| {
        tokio::spawn(save_periodically(
            SaveContext {
                clock: clock.clone(),
                population: Arc::clone(&population),
                identity: identity.clone(),
                outbox: outbox.clone(),
            },
            *interval,
            saves,
            ticker_stop.clone(),
        ))
    });
    shoppers.wait().await;
    pacer_stop.cancel();
    if let Some(pacer) = pacer {
        let _ = pacer.await;
    }
    health.set_shoppers_running(false);
    ticker_stop.cancel();
    let _ = ticker.await;
    let saves = match saver {
        Some(saver) => saver.await.unwrap_or(saves),
        None => saves,
    };

    let finished = plan.end.is_some() && !shutdown.is_cancelled();
    let reached = match plan.end {
        Some(end) if finished => end,
        _ => clock.now(),
    };
    let _ = outbox.send(Message::Watermark(reached)).await;
    if let Some((_, identity)) = saving {
        // The final save: every shopper has stopped.
        let context = SaveContext {
            clock: clock.clone(),
            population: Arc::clone(&population),
            identity,
            outbox: outbox.clone(),
        };
        let snapshot = context.snapshot(saves + 1, finished.then_some(reached));
        let _ = outbox.send(Message::Save(Box::new(snapshot))).await;
    }
    drop(outbox);
    let Delivery { delivered, error } = match sink_result.await {
        Ok(delivery) => delivery,
        Err(_) => Delivery {
            delivered: [0; 4],
            error: Some(SinkError::Thread(
                "the sink thread ended without a report".into(),
            )),
        },
    };
    Summary {
        start,
        reached,
        generated: generated_since(),
        delivered,
        sink_error: error,
    }
}

/// Runs `span` of simulated time from the clock's current instant into `sink`, with the
/// settings' shop and a catalogue and shoppers drawn from `seed`, reporting to no registry: a
/// whole run in one call, for embedding (tests, benchmarks).
pub async fn simulate(
    settings: &Settings,
    seed: u64,
    span: Duration,
    clock: Clock,
    sink: Box<dyn Sink>,
) -> Result<Summary, CatalogueError> {
    let plan = RunPlan {
        seed,
        end: Some(clock.now() + span),
        pace_to_wall_clock: false,
        saving: None,
    };
    let ctx = shop_context(settings, seed)?;
    Ok(run(
        settings,
        plan,
        ctx,
        clock,
        sink,
        CancellationToken::new(),
        Instruments::detached(),
    )
    .await)
}

/// What a save is taken from.
struct SaveContext {
    clock: Clock,
    population: Arc<Population>,
    identity: Identity,
    outbox: mpsc::Sender<Message>,
}

impl SaveContext {
    /// The state of the run now, as save number `saves`; `finished` is the end it reached, if
    /// it did. Consistent while the population is paused or stopped.
    fn snapshot(&self, saves: u64, finished: Option<Timestamp>) -> Snapshot {
        let shoppers = self.population.snapshot();
        // The resumed clock starts where nobody has anything left to do before.
        let position = finished.unwrap_or_else(|| {
            shoppers
                .iter()
                .map(Shopper::next_wake)
                .fold(self.clock.now(), Timestamp::min)
        });
        Snapshot {
            identity: self.identity.clone(),
            position: position.as_micros(),
            repriced_through: self.population.repriced_through().as_micros(),
            finished: finished.is_some(),
            saves,
            shoppers,
            sink: SinkState::default(),
        }
    }
}

/// Saves the run's state every `interval` (real time), the first time at once, until `stop`;
/// returns the number of saves reached. Each save pauses the shoppers between two steps, takes
/// their states, and sends them down the pipeline behind everything they produced before.
async fn save_periodically(
    context: SaveContext,
    interval: Duration,
    mut saves: u64,
    stop: CancellationToken,
) -> u64 {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return saves,
            _ = ticks.tick() => {}
        }
        let paused = context.population.pause().await;
        saves += 1;
        let snapshot = context.snapshot(saves, None);
        if context
            .outbox
            .send(Message::Save(Box::new(snapshot)))
            .await
            .is_err()
        {
            return saves;
        }
        drop(paused);
    }
}

/// Publishes the catalogue's price changes, each at its review instant, after the population's
/// `repriced_through` until `end` (exclusive) or shutdown. A participant of the clock like a
/// shopper, and like a shopper it publishes under a step permit.
async fn reprice(
    ctx: Arc<ShopContext>,
    population: Arc<Population>,
    mut timer: crate::clock::Timer,
    end: Option<Timestamp>,
    outbox: mpsc::Sender<Message>,
    shutdown: CancellationToken,
) {
    let mut at = population.repriced_through();
    loop {
        at = ctx.catalogue.next_review(at);
        if end.is_some_and(|end| at >= end) || shutdown.is_cancelled() {
            return;
        }
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            () = timer.sleep_until(at) => {}
        }
        let _permit = population.step_permit().await;
        let events: Vec<Event> = ctx
            .catalogue
            .repriced_at(at, ctx.rules.currency)
            .into_iter()
            .map(Event::Product)
            .collect();
        if !events.is_empty()
            && outbox
                .send(Message::Events(events, tokio::time::Instant::now()))
                .await
                .is_err()
        {
            return;
        }
        population.set_repriced_through(at);
    }
}

/// How often simulated time catches up with the wall clock once it has reached the present.
const LIVE_STEP: Duration = Duration::from_millis(100);

/// Holds a virtual clock back from the future: while simulated time is behind the wall clock
/// it lets it race there; once it has caught up, it lets it move on to the wall clock's
/// instant every [`LIVE_STEP`] of real time. As a participant of the clock, it stops simulated
/// time while it waits. It never takes the clock past the run's `end`: a backfill that ends in
/// the past just ends.
async fn pace(
    clock: Clock,
    mut timer: crate::clock::Timer,
    end: Option<Timestamp>,
    stop: CancellationToken,
) {
    let mut live = false;
    loop {
        let wall = Clock::wall_now();
        let now = clock.now();
        if now.as_micros() + 1_000_000 < wall.as_micros() {
            let target = end.map_or(wall, |end| end.min(wall));
            if now >= target {
                // The run's end is behind the wall clock: nothing to pace any more (and no
                // reason to hold simulated time).
                drop(timer);
                stop.cancelled().await;
                return;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = timer.sleep_until(target) => {}
            }
            continue;
        }
        if !live {
            live = true;
            tracing::info!(simulated_time = %now, "backfill reached the present; running in real time");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(LIVE_STEP) => {}
        }
        // The clock wakes sleepers up to MAX_SKEW past a deadline: stopping that much short
        // of the wall clock keeps every event at or before its real instant.
        let target = Timestamp::from_micros(
            Clock::wall_now().as_micros() - crate::clock::MAX_SKEW.as_micros() as i64,
        );
        tokio::select! {
            () = stop.cancelled() => return,
            () = timer.sleep_until(target) => {}
        }
    }
}

/// Sends the watermark to the sink at a steady pace and logs progress.
async fn tick(
    clock: Clock,
    outbox: mpsc::Sender<Message>,
    generated: impl Fn() -> TopicCounts,
    metrics: SimulationMetrics,
    stop: CancellationToken,
) {
    let mut interval = tokio::time::interval(WATERMARK_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let every = (PROGRESS_INTERVAL.as_millis() / WATERMARK_INTERVAL.as_millis()) as u64;
    let (mut ticks, mut last_total) = (0u64, 0u64);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        let now = clock.now();
        metrics.simulated_time.set(now.as_micros() as f64 / 1e6);
        if outbox.send(Message::Watermark(now)).await.is_err() {
            return;
        }
        ticks += 1;
        if ticks.is_multiple_of(every) {
            let counts = generated();
            let total: u64 = counts.iter().sum();
            tracing::info!(
                simulated_time = %clock.now(),
                events_per_second = (total - last_total) / PROGRESS_INTERVAL.as_secs(),
                events = %describe(&counts),
                "progress"
            );
            last_total = total;
        }
    }
}
