/// KVEngine: the log-structured key-value engine built on ``PageStore``.
import PageStore
