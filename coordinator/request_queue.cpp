// RequestQueue and DeltaChannel: HTTP threads <-> engine thread hand-offs under one mutex each.
#include "coordinator/request_queue.h"

#include <algorithm>
#include <string>

namespace kvmesh {

void DeltaChannel::push(ChoiceEvent event) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(std::move(event));
    wake = !notified_;
    notified_ = true;
  }
  if (wake && notify_) notify_();
}

std::vector<ChoiceEvent> DeltaChannel::take() {
  std::vector<ChoiceEvent> out;
  std::lock_guard<std::mutex> lock(mu_);
  out.swap(events_);
  notified_ = false;
  return out;
}

namespace {

int64_t sequences_of(const std::vector<GenerationRequest>& prompts) {
  int64_t n = 0;
  for (const auto& p : prompts) n += p.group_size();
  return n;
}

}  // namespace

Result<uint64_t> RequestQueue::submit(std::vector<GenerationRequest> prompts,
                                      std::shared_ptr<DeltaChannel> channel, Clock::time_point arrival) {
  const int64_t n = sequences_of(prompts);
  std::lock_guard<std::mutex> lock(mu_);
  if (draining_.load() || stop_) return unavailable("the server is shutting down");
  if (n_pending_seqs_ + n_engine_waiting_ + n > max_waiting_) {
    return resource_exhausted("The server is busy: " + std::to_string(n_pending_seqs_ + n_engine_waiting_) +
                              " sequences are waiting (limit " + std::to_string(max_waiting_) +
                              "). Please retry later.");
  }
  const uint64_t ticket = next_ticket_++;
  n_pending_seqs_ += n;
  pending_.push_back(Submission{ticket, std::move(prompts), std::move(channel), arrival});
  cv_.notify_one();
  return ticket;
}

void RequestQueue::cancel(uint64_t ticket) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::find_if(pending_.begin(), pending_.end(), [&](const Submission& s) { return s.ticket == ticket; });
  if (it != pending_.end()) {
    n_pending_seqs_ -= sequences_of(it->prompts);
    pending_.erase(it);
    return;
  }
  cancels_.push_back(ticket);
  cv_.notify_one();
}

void RequestQueue::set_draining() {
  std::lock_guard<std::mutex> lock(mu_);
  draining_.store(true);
  cv_.notify_one();
}

void RequestQueue::cancel_all() {
  std::lock_guard<std::mutex> lock(mu_);
  cancel_all_ = true;
  cv_.notify_one();
}

void RequestQueue::stop() {
  std::lock_guard<std::mutex> lock(mu_);
  stop_ = true;
  cv_.notify_one();
}

QueueBatch RequestQueue::take(bool wait, std::chrono::milliseconds max_wait) {
  std::unique_lock<std::mutex> lock(mu_);
  auto posted = [&] { return !pending_.empty() || !cancels_.empty() || cancel_all_ || stop_; };
  if (wait && !posted()) cv_.wait_for(lock, max_wait, posted);
  QueueBatch batch;
  batch.submissions.swap(pending_);
  batch.cancels.swap(cancels_);
  batch.cancel_all = cancel_all_;
  batch.stop = stop_;
  cancel_all_ = false;
  // The engine owns these sequences from now on; they count as waiting until it says otherwise.
  n_engine_waiting_ += n_pending_seqs_;
  n_pending_seqs_ = 0;
  return batch;
}

void RequestQueue::publish_engine_waiting(int32_t n_waiting) {
  std::lock_guard<std::mutex> lock(mu_);
  n_engine_waiting_ = n_waiting;
}

}  // namespace kvmesh
