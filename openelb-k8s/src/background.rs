//! A program (controller, webhook) on a thread of its own, for callers that have no runtime (tests, tools): told
//! to stop and waited for when stopped or dropped.

use std::thread::JoinHandle;

pub struct BackgroundThread<E> {
    stop: Option<Box<dyn FnOnce() + Send>>,
    thread: Option<JoinHandle<Result<(), E>>>,
}

impl<E> BackgroundThread<E> {
    /// `stop` tells the program on `thread` to end (it sends on the channel the program waits on).
    pub fn new(stop: impl FnOnce() + Send + 'static, thread: JoinHandle<Result<(), E>>) -> Self {
        BackgroundThread { stop: Some(Box::new(stop)), thread: Some(thread) }
    }

    /// Tells the program to stop and waits for it: how it ended, `panicked()` if its thread panicked, `Ok` if it
    /// had been stopped before.
    pub fn stop(&mut self, panicked: impl FnOnce() -> E) -> Result<(), E> {
        match self.end() {
            Some(Ok(ended)) => ended,
            Some(Err(_)) => Err(panicked()),
            None => Ok(()),
        }
    }

    fn end(&mut self) -> Option<std::thread::Result<Result<(), E>>> {
        if let Some(stop) = self.stop.take() {
            stop();
        }
        self.thread.take().map(JoinHandle::join)
    }
}

impl<E> Drop for BackgroundThread<E> {
    fn drop(&mut self) {
        let _ = self.end();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// A program on its thread that waits to be told to stop, then runs `then`.
    fn program(then: impl FnOnce() -> Result<(), String> + Send + 'static) -> BackgroundThread<String> {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let _ = rx.recv();
            then()
        });
        BackgroundThread::new(
            move || {
                let _ = tx.send(());
            },
            thread,
        )
    }

    #[test]
    fn stop_returns_how_the_program_ended_then_ok() {
        let mut t = program(|| Err("failed".into()));
        assert_eq!(t.stop(|| "panicked".into()), Err("failed".to_string()));
        assert_eq!(t.stop(|| "panicked".into()), Ok(()), "stopped before");
    }

    #[test]
    fn a_panicked_thread_is_reported() {
        let mut t = program(|| panic!("the program panicked"));
        assert_eq!(t.stop(|| "panicked".into()), Err("panicked".to_string()));
    }

    #[test]
    fn drop_stops_and_waits() {
        let (done_tx, done_rx) = mpsc::channel::<()>();
        drop(program(move || {
            let _ = done_tx.send(());
            Ok(())
        }));
        assert_eq!(done_rx.try_recv(), Ok(()), "the program ended before drop returned");
    }
}
