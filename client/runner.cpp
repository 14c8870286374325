// Runner: the ready queue (arrivals and multi-turn follow-ups), the concurrency cap, sending,
// completion, disconnect injection, the sampling tick and the progress line.
#include "client/runner.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <limits>
#include <memory>
#include <queue>
#include <unordered_set>

#include "client/arrivals.h"
#include "client/rng.h"
#include "client/stream_reader.h"

namespace kvmesh::load {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kTickS = 0.25;
constexpr double kRampTickS = 0.05;

struct Ready {
  double at_s;
  int64_t seq;
  int64_t instance;
  int32_t turn;
  bool operator>(const Ready& o) const { return at_s != o.at_s ? at_s > o.at_s : seq > o.seq; }
};

struct Instance {
  size_t spec = 0;
  std::vector<std::string> replies;
};

class Runner {
 public:
  Runner(const Workload& workload, const RunOptions& options)
      : w_(workload), o_(options), client_(loop_, options.target, options.keep_alive),
        timed_(options.rate > 0.0 || workload.timed) {}

  RunOutput run();

 private:
  double now_s() const { return std::chrono::duration<double>(Clock::now() - t0_).count(); }
  Clock::time_point at(double s) const {
    return t0_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  }
  void plan_starts();
  void plan_disconnects();
  bool disconnect_planned(int64_t instance, int32_t turn) const;
  void pump();
  bool take_next(double now, Ready& next);
  void arm(double t_s);
  void send(const Ready& r, double now);
  void complete(size_t idx, const std::shared_ptr<ResponseReader>& reader, const HttpError& error, double at_s);
  void after_request(size_t idx);
  void finish();
  void tick();
  void print_progress(double now, bool final_line);
  void interrupt();

  const Workload& w_;
  const RunOptions& o_;
  EventLoop loop_;
  HttpClient client_;
  bool timed_;
  Clock::time_point t0_;
  std::priority_queue<Ready, std::vector<Ready>, std::greater<>> ready_;
  std::vector<Instance> instances_;
  std::deque<RequestRecord> records_;
  std::vector<uint64_t> http_ids_;
  std::unordered_set<int64_t> disconnects_;  // instance * max_turns + turn
  int64_t max_turns_ = 1;
  int64_t planned_total_ = 0;
  size_t next_new_ = 0;  // closed loop: the next session to start
  int64_t seq_ = 0;
  int64_t in_flight_ = 0, peak_ = 0, completed_ = 0, failed_ = 0, disconnected_ = 0;
  int64_t tokens_ = 0;
  double armed_at_ = kInf;
  bool stopping_ = false, finished_ = false, interrupted_ = false;
  double end_s_ = 0.0;
  std::vector<TimelineSample> timeline_;
  double last_print_s_ = 0.0;
  int64_t last_print_tokens_ = 0;
};

RunOutput Runner::run() {
  for (const SessionSpec& s : w_.sessions) max_turns_ = std::max<int64_t>(max_turns_, static_cast<int64_t>(s.turns.size()));
  t0_ = Clock::now();
  plan_starts();
  plan_disconnects();
  loop_.on_interrupt([this] { interrupt(); });
  loop_.post([this] {
    pump();
    tick();
  });
  loop_.run();
  RunOutput out;
  out.records.assign(std::make_move_iterator(records_.begin()), std::make_move_iterator(records_.end()));
  out.timeline = std::move(timeline_);
  out.duration_s = end_s_;
  out.not_sent = o_.cycle ? 0 : std::max<int64_t>(0, planned_total_ - static_cast<int64_t>(out.records.size()));
  out.peak_in_flight = peak_;
  out.interrupted = interrupted_;
  return out;
}

// Open loop and replay: every session's first turn is due at its start time.
void Runner::plan_starts() {
  const size_t n = w_.sessions.size();
  for (const SessionSpec& s : w_.sessions) planned_total_ += static_cast<int64_t>(s.turns.size());
  if (!timed_) return;
  std::vector<double> starts;
  if (o_.rate > 0.0) {
    starts = arrival_offsets(ArrivalSpec{o_.rate, o_.burstiness, o_.ramp_up_s, o_.seed}, static_cast<int64_t>(n));
  } else {
    for (const SessionSpec& s : w_.sessions) starts.push_back(std::max(0.0, s.start_s));
  }
  for (size_t i = 0; i < starts.size(); ++i) {
    instances_.push_back(Instance{i, {}});
    ready_.push(Ready{starts[i], seq_++, static_cast<int64_t>(i), 0});
  }
}

void Runner::plan_disconnects() {
  if (o_.disconnect_fraction <= 0.0 || o_.cycle) return;
  const int64_t slots = static_cast<int64_t>(w_.sessions.size()) * max_turns_;
  const auto k = static_cast<int64_t>(std::llround(o_.disconnect_fraction * static_cast<double>(planned_total_)));
  // Choose among real (session, turn) slots: draw slot ids, keep those that exist.
  std::vector<int64_t> real;
  for (int64_t i = 0; i < slots; ++i) {
    const auto s = static_cast<size_t>(i / max_turns_);
    if (i % max_turns_ < static_cast<int64_t>(w_.sessions[s].turns.size())) real.push_back(i);
  }
  for (int64_t pick : choose_subset(static_cast<int64_t>(real.size()), k, o_.seed)) disconnects_.insert(real[pick]);
}

bool Runner::disconnect_planned(int64_t instance, int32_t turn) const {
  if (o_.disconnect_fraction <= 0.0) return false;
  if (o_.cycle) {  // unbounded: a seeded coin per request
    Rng rng(o_.seed ^ (static_cast<uint64_t>(instance) * 0x9e3779b97f4a7c15ULL + static_cast<uint64_t>(turn)));
    return rng.uniform() < o_.disconnect_fraction;
  }
  return disconnects_.count(instance * max_turns_ + turn) > 0;
}

bool Runner::take_next(double now, Ready& next) {
  if (!ready_.empty() && ready_.top().at_s <= now) {
    next = ready_.top();
    ready_.pop();
    return true;
  }
  if (timed_) return false;
  if (next_new_ >= w_.sessions.size() && !(o_.cycle && !w_.sessions.empty())) return false;
  const size_t spec = next_new_ % w_.sessions.size();
  ++next_new_;
  instances_.push_back(Instance{spec, {}});
  next = Ready{now, seq_++, static_cast<int64_t>(instances_.size()) - 1, 0};
  return true;
}

void Runner::pump() {
  if (finished_) return;
  const double now = now_s();
  if (o_.duration_s > 0.0 && now >= o_.duration_s) stopping_ = true;
  while (!stopping_) {
    const int32_t cap = concurrency_at(now, o_.concurrency, timed_ ? 0.0 : o_.ramp_up_s);
    if (in_flight_ >= cap) {
      if (cap < o_.concurrency) arm(now + kRampTickS);
      break;
    }
    Ready next{};
    if (!take_next(now, next)) break;
    send(next, now);
  }
  if (!stopping_ && !ready_.empty() && ready_.top().at_s > now) {
    arm(o_.duration_s > 0.0 ? std::min(ready_.top().at_s, o_.duration_s) : ready_.top().at_s);
  }
  const bool nothing_left = ready_.empty() && (timed_ || (next_new_ >= w_.sessions.size() && !o_.cycle));
  if (in_flight_ == 0 && (stopping_ || nothing_left)) finish();
}

void Runner::arm(double t_s) {
  if (t_s >= armed_at_ - 1e-6) return;
  armed_at_ = t_s;
  loop_.call_at(at(t_s), [this, t_s] {
    if (armed_at_ == t_s) armed_at_ = kInf;
    pump();
  });
}

void Runner::send(const Ready& r, double now) {
  Instance& inst = instances_[static_cast<size_t>(r.instance)];
  const SessionSpec& spec = w_.sessions[inst.spec];
  const TurnSpec& turn = spec.turns[static_cast<size_t>(r.turn)];
  const size_t idx = records_.size();
  RequestRecord& rec = records_.emplace_back();
  rec.id = static_cast<int64_t>(idx);
  rec.session = static_cast<int32_t>(r.instance);
  rec.turn = r.turn;
  rec.streamed = o_.body.stream;
  rec.scheduled_s = timed_ ? r.at_s : now;
  rec.sent_s = now;
  rec.expected_input_tokens = turn.input_tokens;
  rec.expected_output_tokens = o_.body.pin_output ? turn.max_tokens : -1;
  rec.disconnect_planned = disconnect_planned(r.instance, r.turn);
  BodyOptions body = o_.body;
  body.seed = o_.seed * 1000003 + idx;
  HttpRequest request{"POST", o_.path, request_body(body, w_, spec, r.turn, inst.replies), o_.timeout_s};
  auto reader = std::make_shared<ResponseReader>(o_.body.stream, o_.body.chat);
  HttpEvents ev;
  ev.on_status = [this, idx](int status) { records_[idx].http_status = status; };
  ev.on_body = [this, idx, reader](std::string_view bytes, Clock::time_point t) {
    RequestRecord& rr = records_[idx];
    const size_t before = rr.chunk_tokens.size();
    reader->feed(bytes, std::chrono::duration<double>(t - t0_).count(), rr);
    for (size_t i = before; i < rr.chunk_tokens.size(); ++i) tokens_ += rr.chunk_tokens[i];
  };
  ev.on_done = [this, idx, reader](const HttpError& error, Clock::time_point t) {
    complete(idx, reader, error, std::chrono::duration<double>(t - t0_).count());
  };
  http_ids_.push_back(client_.start(std::move(request), std::move(ev)));
  peak_ = std::max(peak_, ++in_flight_);
  if (rec.disconnect_planned) {
    loop_.call_at(at(now + o_.disconnect_after_ms / 1e3), [this, idx] {
      if (records_[idx].outcome != Outcome::pending) return;
      records_[idx].error_kind = "disconnect";
      client_.abort(http_ids_[idx]);
    });
  }
}

void Runner::complete(size_t idx, const std::shared_ptr<ResponseReader>& reader, const HttpError& error,
                      double at_s) {
  RequestRecord& rec = records_[idx];
  --in_flight_;
  if (error.ok() || (reader->done_seen() && error.kind == "reset")) {
    reader->finish(at_s, rec);
  } else {
    rec.done_s = at_s;
    if (error.kind == "aborted" && rec.error_kind == "disconnect") {
      rec.outcome = Outcome::disconnected;
      rec.error_kind.clear();
    } else {
      rec.outcome = Outcome::failed;
      rec.error_kind = error.kind == "aborted" ? "cancelled" : error.kind;
      rec.error_message = error.message;
    }
  }
  if (rec.outcome == Outcome::ok) ++completed_;
  else if (rec.outcome == Outcome::disconnected) ++disconnected_;
  else ++failed_;
  after_request(idx);
  pump();
}

// Multiturn: the next turn of the conversation is due after the think time; a failed or dropped
// turn ends the conversation.
void Runner::after_request(size_t idx) {
  RequestRecord& rec = records_[idx];
  Instance& inst = instances_[static_cast<size_t>(rec.session)];
  const auto n_turns = static_cast<int32_t>(w_.sessions[inst.spec].turns.size());
  if (rec.turn + 1 >= n_turns) {
    rec.text.clear();
    inst.replies.clear();
    inst.replies.shrink_to_fit();
    return;
  }
  if (!rec.ok()) return;  // its later turns count as not sent
  inst.replies.push_back(std::move(rec.text));
  rec.text.clear();
  ready_.push(Ready{rec.done_s + o_.think_time_ms / 1e3, seq_++, rec.session, rec.turn + 1});
}

void Runner::finish() {
  if (finished_) return;
  finished_ = true;
  end_s_ = now_s();
  tick();
  if (o_.progress) print_progress(end_s_, true);
  loop_.stop();
}

void Runner::tick() {
  const double now = now_s();
  timeline_.push_back(TimelineSample{now, in_flight_, completed_, failed_, tokens_});
  if (finished_) return;
  if (o_.progress && now - last_print_s_ >= (o_.progress_tty ? 0.5 : 5.0)) print_progress(now, false);
  loop_.call_at(at(now + kTickS), [this] { tick(); });
}

void Runner::print_progress(double now, bool final_line) {
  const double dt = now - last_print_s_;
  const double rate = dt > 0.0 ? static_cast<double>(tokens_ - last_print_tokens_) / dt : 0.0;
  last_print_s_ = now;
  last_print_tokens_ = tokens_;
  char line[256];
  std::snprintf(line, sizeof line, "[%s %7.1fs] completed %lld  in flight %lld  %8.0f tok/s  errors %lld  dropped %lld",
                o_.progress_label.c_str(), now, static_cast<long long>(completed_), static_cast<long long>(in_flight_),
                rate, static_cast<long long>(failed_), static_cast<long long>(disconnected_));
  if (o_.progress_tty) std::fprintf(stderr, "\r\033[K%s%s", line, final_line ? "\n" : "");
  else std::fprintf(stderr, "%s\n", line);
  std::fflush(stderr);
}

// First Ctrl-C: send nothing more, let requests in flight finish. Second: drop them too.
void Runner::interrupt() {
  if (interrupted_) {
    for (size_t i = 0; i < records_.size(); ++i)
      if (records_[i].outcome == Outcome::pending) client_.abort(http_ids_[i]);
    return;
  }
  interrupted_ = true;
  stopping_ = true;
  std::fprintf(stderr, "\nkvmesh-load: interrupted: waiting for %lld requests in flight (Ctrl-C again to drop them)\n",
               static_cast<long long>(in_flight_));
  pump();
}

}  // namespace

RunOutput run_load(const Workload& workload, const RunOptions& options) {
  Runner runner(workload, options);
  return runner.run();
}

}  // namespace kvmesh::load
