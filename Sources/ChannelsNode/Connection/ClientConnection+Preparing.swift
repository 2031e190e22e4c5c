import ChannelLayers
import ChannelsProtocol
import CoreMetrics
import Logging
import NIOCore
import OrderedCollections

extension ClientConnection {
    // MARK: - Before the upgrade (in the handshake's task)

    /// Makes the connection's channel and consumer and runs `connect()` before the handshake is answered,
    /// as Django Channels does: once a client sees the socket open, its consumer has joined its groups.
    func prepare() async {
        guard let route else { return }
        do {
            channelName = try await layer.newChannel(prefix: "specific.", inbox: self)
        } catch {
            refuseUnavailable(error)
            return
        }
        let context = ConsumerContext(channelName: channelName, connection: self)
        let consumer = route.makeDriver(context)
        self.consumerContext = context
        self.consumer = consumer
        if let user = scope.userID {
            guard await joinAsUser(user, context: context) else { return }
        }
        do {
            switch try await consumer.connect() {
            case .accept: accepted = true
            case .reject(let code, let reason): refusal = (code, reason ?? "connection rejected")
            case .deny(let status, let reason): denial = HandshakeRejection(status: status, reason: reason)
            }
        } catch let error as ChannelLayerError where error.code == .unavailable {
            // The consumer could not join its groups: the layer is down, not the consumer. Come back later.
            refuseUnavailable(error)
        } catch {
            logger.warning("consumer connect() failed", metadata: ["error": "\(error)", "path": "\(scope.path)"])
            refusal = (CloseCode.internalError, "internal error")
        }
        if accepted {
            connectionRules = context.forwardRules
            handshakeHeaders = context.handshakeHeaders
        }
        if accepted, takesPresenceEvents, let group = context.presenceGroups.sorted().first {
            await sendPresence(of: group)
        }
        // An event stream always recovers: its browser sends `Last-Event-ID` by itself.
        if accepted, scope.query["recover"] == "1" || eventStream, let history = layer as? any HistoryChannelLayer,
            let group = context.groups.sorted().first(where: history.keepsHistory)
        {
            await recover(group, from: history)
        }
    }

    /// Counts the connection for its user (refused with 4429 past `--max-connections-per-user`) and joins it to
    /// the user's group, `user.<sub>`, before `connect()` runs; `false` when it was refused.
    private func joinAsUser(_ user: String, context: ConsumerContext) async -> Bool {
        if let users = layer as? any UserChannelLayer {
            do throws(ChannelLayerError) {
                switch try await users.userConnected(user, limit: limits.maxConnectionsPerUser) {
                case .admitted: countedUser = user
                case .refused(let count):
                    metrics.userLimitRefusals.increment()
                    refusal = (
                        CloseCode.tooManyConnectionsForUser,
                        "this user already has \(count) connections, the limit (--max-connections-per-user); close one and connect again"
                    )
                    return false
                }
            } catch {
                refuseUnavailable(error)
                return false
            }
        }
        guard let group = UserGroup.name(for: user) else { return true }
        do throws(ChannelLayerError) {
            try await context.groupAdd(group)
        } catch {
            refuseUnavailable(error)
            return false
        }
        return true
    }

    /// Refuses the connection with 1013 (try again later) because the layer cannot reach its backend.
    private func refuseUnavailable(_ error: ChannelLayerError) {
        metrics.layerUnavailableRefusals.increment()
        warnings.warn("refusing connections: the channel layer is unavailable", metadata: ["error": "\(error.message)"])
        refusal = (CloseCode.tryAgainLater, "channel layer unavailable; connect again")
    }

    /// `?presence=1`: `{"type": "presence", "group": G, "channel": <this connection's>, "members": [...]}` once
    /// joined, ahead of live messages.
    private func sendPresence(of group: String) async {
        guard let layer = layer as? any PresenceChannelLayer else { return }
        let members: [PresenceMember]
        do throws(ChannelLayerError) {
            members = try await layer.presence(of: group)
        } catch {
            logger.warning("could not read a group's presence", metadata: ["group": "\(group)", "error": "\(error.message)"])
            return
        }
        let list: [MessageValue] = members.map { member in .map(OrderedDictionary(uniqueKeysWithValues: member.fields)) }
        let answer: OrderedDictionary<String, MessageValue> = [
            "type": "presence", "group": .string(group), "channel": .string(channelName), "members": .array(list),
        ]
        guard let text = try? ClientFrame.encode(answer) else { return }
        let frame = nodeFrame(text, event: "presence")
        try? await eventLoop.submit { [self] in mailbox.prepend(.frame(frame)) }.get()
    }

    /// Closes at once after the upgrade: a handshake step refused the connection.
    func refuse(code: UInt16, reason: String) {
        refusal = (code, reason)
    }

    /// The upgrade did not happen (the client left first): forget the channel and the memberships.
    func abandon() {
        eventLoop.execute { [self] in
            guard handlerContext == nil, lifecycle.abandon() else { return }
            enqueue(.gone(code: CloseCode.abnormal))
        }
    }
}
