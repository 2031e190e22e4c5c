import Synchronization

/// State that callers change from anywhere and one writer task takes from, sleeping while there is nothing
/// to take: the queues of the membership registry and of the cluster state.
final class WriterQueue<State: Sendable>: Sendable {
    private let storage: Mutex<(state: State, waiter: CheckedContinuation<Void, Never>?)>

    init(_ state: State) {
        storage = Mutex((state, nil))
    }

    /// Changes the state under the lock and wakes the writer.
    @discardableResult
    func update<Result>(_ body: (inout State) -> Result) -> Result {
        let (result, waiter) = storage.withLock { storage -> (Result, CheckedContinuation<Void, Never>?) in
            let result = body(&storage.state)
            defer { storage.waiter = nil }
            return (result, storage.waiter)
        }
        waiter?.resume()
        return result
    }

    /// Reads or changes the state under the lock without waking the writer.
    func withState<Result>(_ body: (inout State) -> Result) -> Result {
        storage.withLock { body(&$0.state) }
    }

    /// The writer: waits until `ready` holds (or the task is cancelled), then runs `take` under the lock.
    func next<Result>(ready: (State) -> Bool, take: (inout State) -> Result) async -> Result {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = storage.withLock { storage -> Bool in
                    if ready(storage.state) || Task.isCancelled { return true }
                    storage.waiter = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            let waiter = storage.withLock { storage in
                defer { storage.waiter = nil }
                return storage.waiter
            }
            waiter?.resume()
        }
        return storage.withLock { take(&$0.state) }
    }
}
