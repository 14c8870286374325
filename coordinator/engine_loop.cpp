// EngineLoop: the engine thread's loop (take, admit, cancel, step, publish) and delta routing.
#include "coordinator/engine_loop.h"

#include <chrono>
#include <cstdio>
#include <exception>

#include "coordinator/scheduler.h"

namespace kvmesh {
namespace {

constexpr std::chrono::milliseconds kIdleWait{250};
// /ready turns 503 when the loop has not come round for this long (a step that hangs).
constexpr std::chrono::seconds kStallLimit{120};

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

EngineLoop::EngineLoop(std::unique_ptr<Engine> engine, RequestQueue& queue, Metrics& metrics,
                       EngineLoopOptions options)
    : engine_(std::move(engine)), queue_(queue), metrics_(metrics), options_(options) {
  publish();
}

EngineLoop::~EngineLoop() {
  queue_.cancel_all();
  queue_.stop();
  join();
}

void EngineLoop::start() {
  running_ = true;
  heartbeat_ = Clock::now().time_since_epoch().count();
  thread_ = std::thread([this] { run(); });
}

void EngineLoop::join() {
  if (thread_.joinable()) thread_.join();
}

void EngineLoop::run() {
  try {
    while (!lost_.load()) {
      heartbeat_ = Clock::now().time_since_epoch().count();
      QueueBatch batch = queue_.take(!engine_->has_work(), kIdleWait);
      apply(batch);
      if (batch.stop && !engine_->has_work()) break;
      if (engine_->has_work() && !lost_.load()) {
        // The test delay comes before the step, so a request that finds the engine idle gets its
        // first token one delay (plus compute) after it arrives, like every later token.
        if (options_.debug_step_delay_ms > 0) {
          publish();  // admission counts stay current while it sleeps
          std::this_thread::sleep_for(std::chrono::milliseconds(options_.debug_step_delay_ms));
        }
        step_once();
      }
      publish();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kvmesh-serve: engine thread failed: %s\n", e.what());
    fail_everything(std::string("the engine failed: ") + e.what(), false);
  }
  running_ = false;
}

// The loop cannot go on: new requests get 503, and every open request and every request still in
// the queue ends with an error.
void EngineLoop::fail_everything(const std::string& message, bool unavailable) {
  std::lock_guard<std::mutex> lock(tickets_mu_);
  failed_ = true;
  queue_.stop();  // submit() refuses from here on, so the take below leaves nothing behind
  for (auto& [ticket, t] : tickets_) {
    fail_choices(*t.channel, 0, static_cast<int32_t>(t.last_token_at.size()), message, unavailable);
  }
  tickets_.clear();
  QueueBatch queued = queue_.take(false, std::chrono::milliseconds(0));
  for (Submission& s : queued.submissions) {
    int32_t n_choices = 0;
    for (const auto& p : s.prompts) n_choices += p.n;
    fail_choices(*s.channel, 0, n_choices, message, unavailable);
  }
}

void EngineLoop::fail_lost(const std::string& why) {
  if (lose_claimed_.exchange(true)) return;  // the engine thread and the watchdog may both see it
  std::fprintf(stderr, "kvmesh-serve: %s\n", why.c_str());
  fail_everything(why, true);
  lost_ = true;
}

void EngineLoop::fail_choices(DeltaChannel& channel, int32_t first, int32_t n, const std::string& message,
                              bool unavailable) {
  for (int32_t i = 0; i < n; ++i) {
    ChoiceEvent event;
    event.index = first + i;
    event.delta.index = i;
    event.delta.finish = FinishReason::error;
    event.delta.error = message;
    event.delta.unavailable = unavailable;
    event.at = Clock::now();
    metrics_.count_finish(FinishReason::error);
    channel.push(std::move(event));
  }
}

double EngineLoop::step_seconds() const {
  const Clock::rep started = step_started_.load();
  if (started == 0) return 0;
  return std::chrono::duration<double>(Clock::now() - Clock::time_point(Clock::duration(started))).count();
}

double EngineLoop::stalled_seconds() const {
  const auto beat = Clock::time_point(Clock::duration(heartbeat_.load()));
  return std::chrono::duration<double>(Clock::now() - beat).count();
}

bool EngineLoop::ready() const {
  if (!running_.load() || failed_.load()) return false;
  const auto beat = Clock::time_point(Clock::duration(heartbeat_.load()));
  return Clock::now() - beat < kStallLimit;
}

void EngineLoop::apply(QueueBatch& batch) {
  std::lock_guard<std::mutex> lock(tickets_mu_);
  for (Submission& s : batch.submissions) admit(s);
  for (uint64_t ticket : batch.cancels) cancel_ticket(ticket);
  if (batch.cancel_all) {
    std::vector<uint64_t> all;
    for (const auto& [ticket, t] : tickets_) all.push_back(ticket);
    for (uint64_t ticket : all) cancel_ticket(ticket);
  }
}

void EngineLoop::admit(Submission& s) {
  int32_t n_choices = 0;
  for (const auto& p : s.prompts) n_choices += p.n;
  if (failed_.load()) {  // taken just before the loop was failed from another thread
    fail_choices(*s.channel, 0, n_choices, "the engine is not running", true);
    return;
  }
  Ticket& t = tickets_[s.ticket];
  t.channel = s.channel;
  t.arrival = s.arrival;
  t.last_token_at.assign(static_cast<size_t>(n_choices), Clock::time_point{});
  const uint64_t ticket = s.ticket;
  int32_t first_choice = 0;
  for (GenerationRequest& request : s.prompts) {
    const int32_t n = request.n;
    auto id = engine_->add_request(std::move(request), [this, ticket, first_choice](const GenerationDelta& d) {
      on_delta(ticket, first_choice + d.index, d);
    });
    if (id.is_ok()) {
      t.seq_ids.push_back(*id);
      t.n_open += n;
    } else {
      fail_choices(*t.channel, first_choice, n, id.status().message(), false);
    }
    first_choice += n;
  }
  if (t.n_open == 0) tickets_.erase(ticket);
}

void EngineLoop::cancel_ticket(uint64_t ticket) {
  auto it = tickets_.find(ticket);
  if (it == tickets_.end()) return;  // already finished
  for (uint64_t seq : it->second.seq_ids) engine_->cancel(seq);
}

void EngineLoop::on_delta(uint64_t ticket, int32_t index, const GenerationDelta& delta) {
  std::lock_guard<std::mutex> lock(tickets_mu_);
  auto it = tickets_.find(ticket);
  if (it == tickets_.end()) return;
  Ticket& t = it->second;
  if (!published_this_step_) {
    // Before any client sees this step's output, so that admission never counts a sequence this
    // step already scheduled as waiting (the scheduler's queues are settled during postprocess).
    publish();
    published_this_step_ = true;
  }
  const Clock::time_point now = Clock::now();
  record_timing(t, index, delta, now);
  t.channel->push(ChoiceEvent{index, delta, now});
  if (delta.finish == FinishReason::none) return;
  metrics_.count_finish(delta.finish);
  if (--t.n_open == 0) {
    metrics_.observe_e2e(seconds_between(t.arrival, now));
    tickets_.erase(it);
  }
}

void EngineLoop::record_timing(Ticket& t, int32_t index, const GenerationDelta& delta, Clock::time_point now) {
  if (delta.token_ids.empty()) return;
  auto& last = t.last_token_at[static_cast<size_t>(index)];
  if (last == Clock::time_point{}) {
    metrics_.add_prompt_tokens(delta.n_prompt_tokens);
  } else {
    metrics_.observe_inter_token(seconds_between(last, now));
  }
  last = now;
  if (!t.first_token_seen) {
    t.first_token_seen = true;
    metrics_.observe_ttft(seconds_between(t.arrival, now));
  }
  metrics_.add_generation_tokens(static_cast<int64_t>(delta.token_ids.size()));
}

void EngineLoop::step_once() {
  published_this_step_ = false;
  step_started_ = Clock::now().time_since_epoch().count();
  Status st = engine_->step();
  step_started_ = 0;
  if (st.is_ok()) return;
  std::fprintf(stderr, "kvmesh-serve: engine step failed: %s\n", st.to_string().c_str());
  if (options_.lose_on_unavailable && st.code() == StatusCode::unavailable) fail_lost(st.message());
}

void EngineLoop::publish_kv_tiers() {
  const Scheduler& s = engine_->scheduler();
  const BlockManager& b = s.blocks();
  const TierCounters& c = b.counters();
  const TierCosts& costs = s.tier_policy().costs();
  const double page_bytes = static_cast<double>(engine_->capacity().page_bytes);
  std::array<double, kv_stat_count> k{};
  k[kv_pages_device] = b.n_used() + b.n_cached(Tier::device);
  k[kv_pages_host] = b.n_cached(Tier::host);
  k[kv_pages_disk] = b.n_cached(Tier::disk);
  for (int t = 0; t < 3; ++t) {
    k[kv_bytes_device + t] = k[kv_pages_device + t] * page_bytes;
    k[kv_hits_device + t] = static_cast<double>(c.hits[t]);
  }
  k[kv_moved_device_host] = static_cast<double>(c.moved_out[static_cast<int>(Tier::host)]);
  k[kv_moved_host_disk] = static_cast<double>(c.moved_out[static_cast<int>(Tier::disk)]);
  k[kv_moved_host_device] = static_cast<double>(c.moved_in[static_cast<int>(Tier::device)]);
  k[kv_moved_disk_host] = static_cast<double>(c.moved_in[static_cast<int>(Tier::host)]);
  k[kv_dropped] = static_cast<double>(c.dropped);
  k[kv_checksum_failures] = static_cast<double>(c.failed_loads);
  k[kv_disk_write_failures] = static_cast<double>(c.failed_stores);
  k[kv_cached_tokens] = static_cast<double>(s.stats().n_cached_prompt_tokens);
  const double swap_in = costs.seconds_per_page[static_cast<int>(CacheOpKind::swap_in)];
  k[kv_swap_in_s_host] = swap_in;
  k[kv_swap_in_s_disk] = swap_in + costs.seconds_per_page[static_cast<int>(CacheOpKind::disk_load)];
  k[kv_recompute_s_page] = costs.recompute_seconds_per_token * b.block_size();
  k[kv_page_bytes] = page_bytes;
  k[kv_shared_pages] = b.n_shared();
  k[kv_cow_copies] = static_cast<double>(c.copies);
  metrics_.set_kv_stats(k);
}

void EngineLoop::publish() {
  const Scheduler& s = engine_->scheduler();
  EngineGauges g;
  g.n_running = s.n_running();
  g.n_waiting = s.n_waiting();
  g.n_pages_used = s.blocks().n_used();
  g.n_pages_free = s.blocks().n_free();
  g.n_preemptions = s.stats().n_preemptions;
  g.n_steps = s.stats().n_steps;
  queue_.publish_engine_waiting(g.n_waiting);
  metrics_.set_engine_gauges(g);
  publish_kv_tiers();
}

}  // namespace kvmesh
